// The C ABI (srexport.h) over the C++ API: exceptions become a status plus a
// thread-local message; nothing throws across the boundary.
#include <cmath>
#include <cstring>
#include <new>

#include "internal.hpp"

struct srx_upscaler {
    srexport::Upscaler upscaler;
    std::string model, variant, input_kind, backend, precision, window, tiling_note;
};

namespace {

thread_local std::string last_error;

srx_status set_error(srx_status status, const std::string& message) {
    last_error = message;
    return status;
}

template <typename F>
srx_status guard(F&& body) {
    try {
        body();
        last_error.clear();
        return SRX_OK;
    } catch (const srexport::Error& exc) {
        return set_error(static_cast<srx_status>(exc.status()), exc.what());
    } catch (const std::bad_alloc&) {
        return set_error(SRX_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& exc) {
        return set_error(SRX_ERR_INTERNAL, std::string("internal error: ") + exc.what());
    } catch (...) {
        return set_error(SRX_ERR_INTERNAL, "internal error");
    }
}

const char* or_default(const char* s, const char* fallback) { return s && *s ? s : fallback; }

srexport::ImageView view_of(const srx_image& image) {
    srexport::ImageView v;
    v.data = image.data;
    v.width = image.width;
    v.height = image.height;
    v.channels = image.channels;
    v.dtype = static_cast<srexport::DType>(image.dtype);
    v.stride = image.stride;
    return v;
}

}  // namespace

extern "C" {

const char* srx_version(void) {
    static const std::string v = srexport::version();
    return v.c_str();
}

const char* srx_last_error(void) { return last_error.c_str(); }

const char* srx_status_name(srx_status status) {
    switch (status) {
        case SRX_OK: return "ok";
        case SRX_ERR_ARGUMENT: return "invalid argument";
        case SRX_ERR_BUNDLE: return "bundle error";
        case SRX_ERR_BACKEND: return "backend error";
        case SRX_ERR_UNAVAILABLE: return "backend unavailable";
        case SRX_ERR_IMAGE: return "image error";
        case SRX_ERR_SHAPE: return "shape error";
        case SRX_ERR_CANCELLED: return "cancelled";
        case SRX_ERR_OUT_OF_MEMORY: return "out of memory";
        case SRX_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

int srx_backend_available(const char* backend) {
    if (!backend) return 0;
    for (const auto& name : srexport::compiled_backends())
        if (name == backend) return 1;
    return 0;
}

void srx_options_init(srx_options* o) {
    if (!o) return;
    std::memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->backend = "auto";
    o->precision = "auto";
    o->overlap = -1;
    o->window = "hamming";
    o->batch = 1;
    o->verify_hashes = 1;
    o->patch_h = o->patch_w = SRX_PATCH_AUTO;
    o->stitch = "auto";
    o->memory_gib = 0.0;
}

srx_status srx_open(const char* bundle_dir, const srx_options* options, srx_upscaler** out) {
    if (!out) return set_error(SRX_ERR_ARGUMENT, "srx_open: out is NULL");
    *out = nullptr;
    if (!bundle_dir) return set_error(SRX_ERR_ARGUMENT, "srx_open: bundle_dir is NULL");
    srx_options defaults;
    srx_options_init(&defaults);
    if (options) {
        if (options->struct_size < offsetof(srx_options, cache_dir) || options->struct_size > sizeof(srx_options))
            return set_error(SRX_ERR_ARGUMENT, "srx_open: options were not set up with srx_options_init");
        std::memcpy(&defaults, options, options->struct_size);
    }
    const srx_options& o = defaults;
    return guard([&] {
        if (!std::isfinite(o.noise)) srexport::detail::fail(srexport::Status::Argument, "noise must be a finite number");
        srexport::Options opt;
        opt.backend = or_default(o.backend, "auto");
        opt.precision = or_default(o.precision, "auto");
        opt.patch_h = o.patch_h;
        opt.patch_w = o.patch_w;
        opt.overlap = o.overlap;
        opt.window = or_default(o.window, "hamming");
        opt.batch = o.batch;
        opt.noise = o.noise;
        opt.seed = o.seed;
        opt.threads = o.threads;
        opt.verify_hashes = o.verify_hashes != 0;
        opt.cache_dir = o.cache_dir ? o.cache_dir : "";
        opt.device = o.device;
        opt.stitch = or_default(o.stitch, "auto");
        opt.memory_gib = o.memory_gib;
        auto* handle = new srx_upscaler{srexport::Upscaler(bundle_dir, opt), {}, {}, {}, {}, {}, {}, {}};
        const srexport::Info& info = handle->upscaler.info();
        handle->model = info.manifest.model;
        handle->variant = info.manifest.variant;
        handle->input_kind = info.manifest.input_kind;
        handle->backend = info.backend;
        handle->precision = info.precision;
        handle->window = info.window;
        handle->tiling_note = info.tiling_note;
        *out = handle;
    });
}

void srx_close(srx_upscaler* upscaler) { delete upscaler; }

srx_status srx_get_info(const srx_upscaler* up, srx_info* info) {
    if (!up || !info) return set_error(SRX_ERR_ARGUMENT, "srx_get_info: NULL argument");
    const srexport::Info& i = up->upscaler.info();
    info->model = up->model.c_str();
    info->variant = up->variant.c_str();
    info->scale = i.manifest.scale;
    info->input_kind = up->input_kind.c_str();
    info->backend = up->backend.c_str();
    info->precision = up->precision.c_str();
    info->patch_h = i.patch_h;
    info->patch_w = i.patch_w;
    info->overlap = i.overlap;
    info->batch = i.batch;
    info->noise_inputs = int(i.manifest.noise_inputs.size());
    info->window = up->window.c_str();
    return SRX_OK;
}

srx_status srx_output_size(const srx_upscaler* up, int width, int height, int* out_width, int* out_height) {
    if (!up || !out_width || !out_height) return set_error(SRX_ERR_ARGUMENT, "srx_output_size: NULL argument");
    return guard([&] {
        const auto size = up->upscaler.output_size(width, height);
        *out_width = size.first;
        *out_height = size.second;
    });
}

srx_status srx_get_plan(const srx_upscaler* up, int width, int height, srx_plan* plan) {
    if (!up || !plan) return set_error(SRX_ERR_ARGUMENT, "srx_get_plan: NULL argument");
    return guard([&] {
        const srexport::Plan p = up->upscaler.plan(width, height);
        plan->patch_h = p.patch_h;
        plan->patch_w = p.patch_w;
        plan->tiles = p.tiles;
        plan->overlap = p.overlap;
        plan->crop = p.crop ? 1 : 0;
        plan->pad_top = p.pad_top;
        plan->pad_bottom = p.pad_bottom;
        plan->pad_left = p.pad_left;
        plan->pad_right = p.pad_right;
        plan->computed_pixels = p.computed_pixels;
    });
}

const char* srx_tiling_note(const srx_upscaler* up) { return up ? up->tiling_note.c_str() : ""; }

const char* srx_precision_note(const srx_upscaler* up) {
    return up ? up->upscaler.info().precision_note.c_str() : "";
}

srx_status srx_set_noise(srx_upscaler* up, double noise, uint64_t seed) {
    if (!up) return set_error(SRX_ERR_ARGUMENT, "srx_set_noise: NULL handle");
    return guard([&] { up->upscaler.set_noise(noise, seed); });
}

srx_status srx_upscale(srx_upscaler* up, const srx_image* in, const srx_image* out, srx_progress_fn progress,
                       void* user) {
    if (!up || !in || !out) return set_error(SRX_ERR_ARGUMENT, "srx_upscale: NULL argument");
    return guard([&] {
        srexport::Progress callback;
        if (progress) callback = [progress, user](int done, int total) { return progress(done, total, user) == 0; };
        up->upscaler.upscale(view_of(*in), view_of(*out), callback);
    });
}

void srx_cancel(srx_upscaler* up) {
    if (up) up->upscaler.cancel();
}

srx_status srx_normal_field(uint64_t seed, uint32_t stream, int64_t top, int64_t left, int height, int width,
                            float* out) {
    if (!out && height > 0 && width > 0) return set_error(SRX_ERR_ARGUMENT, "srx_normal_field: out is NULL");
    if (height < 0 || width < 0) return set_error(SRX_ERR_ARGUMENT, "srx_normal_field: negative size");
    return guard([&] { srexport::normal_field(seed, stream, top, left, height, width, out); });
}

srx_status srx_bicubic(const float* in, int height, int width, float* out, int out_height, int out_width) {
    if (!in || !out) return set_error(SRX_ERR_ARGUMENT, "srx_bicubic: NULL argument");
    return guard([&] { srexport::detail::bicubic_plane(in, height, width, out, out_height, out_width); });
}

}  // extern "C"
