// The runtime: tile an image, run patches on a backend, blend them with a window.
// The twin of srexport/runtime/upscaler.py (Upscaler.upscale_planes, noise_batch,
// upscale_loaded and _upscale_array), step for step.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <sstream>
#include <type_traits>

#include "internal.hpp"

namespace srexport {

using detail::fail;

namespace {

constexpr float LUMA[3] = {0.299f, 0.587f, 0.114f};

std::size_t dtype_size(DType d) {
    switch (d) {
        case DType::UInt8: return 1;
        case DType::UInt16: return 2;
        case DType::Float32: return 4;
    }
    return 0;
}

float peak_of(DType d) { return d == DType::UInt8 ? 255.0f : d == DType::UInt16 ? 65535.0f : 1.0f; }

std::size_t row_bytes(const ImageView& v) { return std::size_t(v.width) * v.channels * dtype_size(v.dtype); }

void check_view(const ImageView& v, const char* what) {
    const std::string w(what);
    if (!v.data) fail(Status::Image, w + " image has no data");
    if (v.width < 1 || v.height < 1)
        fail(Status::Image, w + " image is empty (" + std::to_string(v.height) + "x" + std::to_string(v.width) + ")");
    if (v.channels != 1 && v.channels != 3 && v.channels != 4)
        fail(Status::Image, "expected an HxW or HxWxC " + w + " image with C in (1, 3, 4), got C = " +
                                std::to_string(v.channels));
    if (dtype_size(v.dtype) == 0)
        fail(Status::Image, "unsupported " + w + " dtype " + std::to_string(int(v.dtype)) + " (uint8, uint16 or float32)");
    if (v.stride != 0 && v.stride < row_bytes(v))
        fail(Status::Image, w + " stride " + std::to_string(v.stride) + " is smaller than one row (" +
                                std::to_string(row_bytes(v)) + " bytes)");
}

// One row of an image as float (raw values, not yet divided by the peak).
template <typename T>
void load_row(const void* row, int width, int channels, int channel, float* out) {
    const T* p = static_cast<const T*>(row) + channel;
    for (int x = 0; x < width; ++x) out[x] = float(p[std::size_t(x) * channels]);
}

void load_channel(const ImageView& v, int y, int channel, float* out) {
    const std::size_t stride = v.stride ? v.stride : row_bytes(v);
    const void* row = static_cast<const unsigned char*>(v.data) + std::size_t(y) * stride;
    switch (v.dtype) {
        case DType::UInt8: return load_row<std::uint8_t>(row, v.width, v.channels, channel, out);
        case DType::UInt16: return load_row<std::uint16_t>(row, v.width, v.channels, channel, out);
        case DType::Float32: return load_row<float>(row, v.width, v.channels, channel, out);
    }
}

// round(clamp(v, 0, 1) * peak), half to even as numpy.rint; NaN -> 0. Adding and
// subtracting 2^23 rounds a float in [0, 2^23) to an integer in the current rounding mode
// (to nearest, ties to even), without a libm call.
inline float quantize(float v, float peak) {
    const float c = v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f;
    const float two23 = 8388608.0f;
    return (c * peak + two23) - two23;
}

template <typename T>
void store_row(void* row, int width, int channels, int channel, const float* values, float peak) {
    T* p = static_cast<T*>(row) + channel;
    for (int x = 0; x < width; ++x) {
        if constexpr (std::is_same_v<T, float>) p[std::size_t(x) * channels] = values[x];
        else p[std::size_t(x) * channels] = static_cast<T>(quantize(values[x], peak));
    }
}

void store_channel(const ImageView& v, int y, int channel, const float* values) {
    const std::size_t stride = v.stride ? v.stride : row_bytes(v);
    void* row = static_cast<unsigned char*>(v.data) + std::size_t(y) * stride;
    switch (v.dtype) {
        case DType::UInt8: return store_row<std::uint8_t>(row, v.width, v.channels, channel, values, 255.0f);
        case DType::UInt16: return store_row<std::uint16_t>(row, v.width, v.channels, channel, values, 65535.0f);
        case DType::Float32: return store_row<float>(row, v.width, v.channels, channel, values, 1.0f);
    }
}

// Clears the handle's cancel request when a call returns, however it returns.
struct CancelScope {
    std::atomic<bool>& flag;
    ~CancelScope() { flag.store(false); }
};

}  // namespace

struct Upscaler::Impl {
    Info info;
    std::unique_ptr<detail::Session> session;
    bool overlap_given = false;
    detail::MemoryModel memory_model;  // patch auto's, read from the graph at open
    double noise = 0.0;
    std::uint64_t seed = 0;
    std::mutex mutex;
    std::atomic<bool> cancel{false};

    void check_cancel() {
        if (cancel.exchange(false)) fail(Status::Cancelled, "cancelled");
    }

    // Crops of the whole-image noise fields (image coordinates) for these tiles.
    void noise_inputs(const detail::TilePlan& plan, const std::vector<std::pair<int, int>>& tiles,
                      std::vector<detail::Tensor>& out) const {
        const auto& specs = info.manifest.noise_inputs;
        out.resize(specs.size());
        const float amplitude = float(noise);
        for (std::size_t index = 0; index < specs.size(); ++index) {
            const NoiseInput& spec = specs[index];
            const int f = spec.factor, b = spec.border;
            const int h = f * (plan.patch_h + 2 * b), w = f * (plan.patch_w + 2 * b);
            detail::Tensor& t = out[index];
            t.shape = {std::int64_t(tiles.size()), spec.channels, h, w};
            if (spec.kind == "amplitude") {
                t.data.assign(std::size_t(t.count()), amplitude);
                continue;
            }
            t.data.assign(std::size_t(t.count()), 0.0f);
            if (noise == 0.0) continue;
            const std::size_t plane = std::size_t(h) * w;
            for (std::size_t n = 0; n < tiles.size(); ++n)
                for (int c = 0; c < spec.channels; ++c) {
                    float* dst = t.data.data() + (n * spec.channels + c) * plane;
                    normal_field(seed, std::uint32_t(16 * index + c),
                                 std::int64_t(f) * (tiles[n].first - plan.before_h - b),
                                 std::int64_t(f) * (tiles[n].second - plan.before_w - b), h, w, dst);
                    for (std::size_t i = 0; i < plane; ++i) dst[i] *= amplitude;
                }
        }
    }

    // Whether tiles of this patch are crop-stitched on an image of this size (a patch
    // covering an axis needs no overlap along it).
    bool crops(std::pair<int, int> patch, int height, int width) const {
        if (info.stitch == "blend") return false;
        if (info.stitch == "crop") return true;
        if (overlap_given) return false;
        const ShapeRules& rules = info.manifest.shape_rules;
        if (!rules.halo) return false;
        for (const auto& [p, length] : {std::pair<int, int>{patch.first, height}, std::pair<int, int>{patch.second, width}})
            if (rules.legal_at_least(p) < rules.legal_at_least(length) && !detail::crop_patch_ok(p, p, rules))
                return false;
        return true;
    }

    // The budget's patch for this image (false: it runs whole); crop-stitched tiles are at
    // least 2 * halo + 1 wide and overlap by 2 * halo, blended tiles at least twice their overlap.
    bool auto_patch(int height, int width, bool crop, std::pair<int, int>& patch) const {
        const ShapeRules& rules = info.manifest.shape_rules;
        // Blended tiles step by at least the overlap, as in Python (srexport.runtime.upscaler):
        // below that a tight budget is exceeded anyway, and a tile per pixel would be computed.
        const int floor = crop ? 2 * *rules.halo + 1 : std::max({rules.min_size, info.overlap + 1, 2 * info.overlap});
        const int overlap = crop ? 2 * *rules.halo : info.overlap;
        const double recompute = info.backend == "tensorrt" ? 0.0 : detail::CPU_RECOMPUTE;  // CPU sessions
        return detail::budget_patch(memory_model, info.budget_bytes, rules, height, width, info.batch, !crop, floor,
                                    overlap, patch, session->max_patch(), recompute);
    }

    // The tiling of an image of (height, width) graph input pixels.
    detail::TilePlan graph_plan(int height, int width) const {
        const ShapeRules& rules = info.manifest.shape_rules;
        std::pair<int, int> patch{info.patch_h, info.patch_w};
        if (info.patch_auto) {
            const bool crop = info.stitch != "blend";
            bool tiled = auto_patch(height, width, crop, patch);
            // A halo too wide for the budget (MGBP track 3: 1,159 px): blend tiles rather than exceed it.
            if (tiled && crop && info.stitch == "auto" &&
                memory_model.patch_bytes(patch.first, patch.second, info.batch) >
                    double(info.budget_bytes) - detail::image_bytes(height, width, rules.output_scale, false))
                tiled = auto_patch(height, width, false, patch);
            if (!tiled) patch = {rules.legal_at_least(height), rules.legal_at_least(width)};
        }
        if (crops(patch, height, width)) return detail::plan_crop(height, width, patch.first, patch.second, rules);
        return detail::plan_tiles(height, width, patch.first, patch.second, info.overlap, rules);
    }

    detail::TilePlan lr_plan(int height, int width) const {
        const Manifest& m = info.manifest;
        if (m.input_kind == "upscaled") height *= m.scale, width *= m.scale;
        return graph_plan(height, width);
    }

    std::vector<float> upscale_planes(const float* planes, int height, int width, const Progress& progress) {
        const Manifest& m = info.manifest;
        std::vector<float> upscaled;
        if (m.input_kind == "upscaled") {
            const int uh = height * m.scale, uw = width * m.scale;
            upscaled.resize(std::size_t(3) * uh * uw);
            for (int c = 0; c < 3; ++c)
                detail::bicubic_plane(planes + std::size_t(c) * height * width, height, width,
                                      upscaled.data() + std::size_t(c) * uh * uw, uh, uw);
            planes = upscaled.data(), height = uh, width = uw;
        }
        // Static-shape buckets would go here: the plan's patch padded up to a few graph shapes.
        const detail::TilePlan plan = graph_plan(height, width);
        const std::vector<float> padded =
            detail::reflect_pad(planes, 3, height, width, plan.before_h, plan.extra_h - plan.before_h, plan.before_w,
                                plan.extra_w - plan.before_w);
        upscaled.clear(), upscaled.shrink_to_fit();
        const int s = m.shape_rules.output_scale;
        const int pad_h = height + plan.extra_h, pad_w = width + plan.extra_w;
        std::unique_ptr<detail::Accumulator> stitcher;
        if (plan.crop()) {
            stitcher = std::make_unique<detail::CropStitcher>(3, plan, s);
        } else {
            std::vector<float> wy = detail::window_1d(info.window, s * plan.patch_h);
            std::vector<float> wx = detail::window_1d(info.window, s * plan.patch_w);
            stitcher = session->device_accumulator(3, s * pad_h, s * pad_w, wy, wx);
            if (!stitcher) stitcher = std::make_unique<detail::CpuBlender>(3, s * pad_h, s * pad_w, wy, wx);
        }

        const int total = int(plan.tiles.size());
        const int ph = plan.patch_h, pw = plan.patch_w;
        detail::Tensor image;
        std::vector<detail::Tensor> noises;
        for (int first = 0; first < total; first += info.batch) {
            check_cancel();
            const int n = std::min(info.batch, total - first);
            std::vector<std::pair<int, int>> tiles(plan.tiles.begin() + first, plan.tiles.begin() + first + n);
            image.shape = {n, 3, ph, pw};
            image.data.resize(std::size_t(image.count()));
            for (int b = 0; b < n; ++b)
                for (int c = 0; c < 3; ++c)
                    for (int y = 0; y < ph; ++y) {
                        const float* src =
                            padded.data() + (std::size_t(c) * pad_h + tiles[b].first + y) * pad_w + tiles[b].second;
                        std::copy(src, src + pw, image.data.data() + ((std::size_t(b) * 3 + c) * ph + y) * pw);
                    }
            noise_inputs(plan, tiles, noises);
            std::vector<detail::NamedInput> inputs{{"image", &image}};
            for (std::size_t i = 0; i < noises.size(); ++i) inputs.push_back({m.noise_inputs[i].name, &noises[i]});
            std::vector<std::pair<int, int>> offsets;
            for (const auto& t : tiles) offsets.emplace_back(s * t.first, s * t.second);
            session->run_and_blend(inputs, offsets, *stitcher);
            if (progress && !progress(std::min(first + info.batch, total), total)) fail(Status::Cancelled, "cancelled");
        }
        return stitcher->result(s * plan.before_h, s * plan.before_w, s * height, s * width);
    }

    std::string tiling_note() const {
        std::ostringstream note;
        if (info.patch_auto) {
            char gib[32];
            std::snprintf(gib, sizeof gib, "%.1f", double(info.budget_bytes) / double(std::int64_t(1) << 30));
            note << "patch auto (memory budget " << gib << " GiB, " << info.budget_source
                 << "; images that fit run whole), ";
            if (info.stitch != "blend") note << "crop stitching";
            else note << "overlap " << info.overlap << ", window " << info.window;
        } else {
            const ShapeRules& rules = info.manifest.shape_rules;
            const bool crop = info.stitch == "crop" ||
                              (info.stitch == "auto" && !overlap_given && detail::crop_patch_ok(info.patch_h, info.patch_w, rules));
            note << "patch " << info.patch_h << "x" << info.patch_w << ", ";
            if (crop) note << "crop stitching (overlap " << detail::crop_overlap(rules) << ")";
            else note << "overlap " << info.overlap << ", window " << info.window;
        }
        note << ", batch " << info.batch;
        return note.str();
    }

    std::pair<int, int> output_size(int width, int height) const {
        const Manifest& m = info.manifest;
        long long w = width, h = height;
        if (m.input_kind == "upscaled") w *= m.scale, h *= m.scale;
        w *= m.shape_rules.output_scale, h *= m.shape_rules.output_scale;
        if (w > (1LL << 30) || h > (1LL << 30)) fail(Status::Image, "output would be too large");
        return {int(w), int(h)};
    }
};

Upscaler::Upscaler(const std::string& bundle_dir, const Options& options) : impl_(std::make_unique<Impl>()) {
    Info& info = impl_->info;
    info.bundle = bundle_dir;
    info.manifest = read_manifest(bundle_dir, options.verify_hashes);
    const Manifest& m = info.manifest;
    if (m.task != "sr")
        fail(Status::Bundle, "bundle " + bundle_dir + " holds a " + m.task + " network, not a super-resolution one");
    if (m.input_kind != "lr" && m.input_kind != "upscaled")
        fail(Status::Bundle, "bundle " + bundle_dir + " has an unknown input_kind '" + m.input_kind + "'");
    if (!detail::known_window(options.window))
        fail(Status::Argument, "unknown window '" + options.window + "' (windows: hamming, bartlett, none)");
    if (options.batch < 1) fail(Status::Argument, "batch must be >= 1, got " + std::to_string(options.batch));
    const ShapeRules& rules = m.shape_rules;
    if (options.stitch != "auto" && options.stitch != "crop" && options.stitch != "blend")
        fail(Status::Argument, "unknown stitching '" + options.stitch + "' (auto, crop, blend)");
    if (options.stitch == "crop" && !rules.halo)
        fail(Status::Argument, m.model + " has no finite receptive field (its output depends on the whole patch): "
                               "crop stitching cannot be exact; use stitch blend");
    const bool auto_asked = options.patch_h == PATCH_AUTO && options.patch_w == PATCH_AUTO;
    const bool bundle_asked = options.patch_h == PATCH_BUNDLE && (options.patch_w == PATCH_BUNDLE || !options.patch_w);
    if (!auto_asked && !bundle_asked && (options.patch_h < 1 || options.patch_w < 0))
        fail(Status::Argument, "patch must be > 0 (or SRX_PATCH_AUTO = 0, SRX_PATCH_BUNDLE = -1), got " +
                                   std::to_string(options.patch_h) + "x" + std::to_string(options.patch_w));
    // Networks without a finite halo (instance norm) keep their training patch.
    info.patch_auto = auto_asked && rules.halo.has_value();
    if (auto_asked || bundle_asked) {
        info.patch_h = info.patch_w = m.patch;
    } else {
        info.patch_h = options.patch_h;
        info.patch_w = options.patch_w ? options.patch_w : options.patch_h;
    }
    impl_->overlap_given = options.overlap != -1;
    info.overlap = impl_->overlap_given ? options.overlap : m.overlap;
    info.stitch = options.stitch;
    info.window = options.window;
    info.batch = options.batch;
    // "auto": the precision_auto rule on this machine, resolved once, its reason kept.
    std::string precision = options.precision;
    if (precision == "auto") {
        const detail::PrecisionChoice choice =
            detail::choose_precision(m.precision_records, detail::this_machine(options.backend));
        precision = choice.precision;
        info.precision_note = choice.reason;
    }
    info.precision = precision;
    // Reject an illegal patch or overlap now, not mid-image (the same checks as plan_tiles).
    if (!info.patch_auto && options.stitch != "crop") {
        const int edge = std::max(info.patch_h, info.patch_w);
        detail::plan_tiles(edge, edge, info.patch_h, info.patch_w, info.overlap, rules);
    }
    if (info.patch_auto) {
        const detail::Budget budget = detail::default_budget(options.memory_gib);
        info.budget_bytes = budget.bytes, info.budget_source = budget.source;
    } else {
        detail::default_budget(options.memory_gib);  // the same refusal of a bad value
    }
    if (info.patch_auto) {
        // The memory model reads the precision's graph (bf16 computes on the fp32 one), once.
        const bool own_graph = m.precisions.count(precision) && precision != "bf16";
        impl_->memory_model =
            detail::graph_memory_model(detail::graph_path(bundle_dir, m, own_graph ? precision : "fp32"), m);
    }
    info.tiling_note = impl_->tiling_note();
    impl_->noise = options.noise;
    impl_->seed = options.seed;

    detail::SessionRequest request;
    request.root = bundle_dir;
    request.manifest = &info.manifest;
    request.precision = precision;
    // OpenVINO refuses fp16 (and bf16 on CPUs without it) before looking for the graph, as
    // the Python backend does.
    if (options.backend == "openvino") detail::openvino_check_precision(precision);
    // bf16 is a compute precision (OpenVINO's), run on the fp32 graph.
    request.graph = detail::graph_path(bundle_dir, m, precision == "bf16" ? "fp32" : precision);
    request.threads = options.threads > 0 ? options.threads : detail::physical_threads();
    request.batch = info.batch;
    request.patch_h = rules.legal_at_least(info.patch_h);
    request.patch_w = rules.legal_at_least(info.patch_w);
    request.cache_dir = options.cache_dir;
    request.device = options.device;
    impl_->session = detail::open_session(options.backend, request, info.backend_note);
    info.backend = impl_->session->name();
    impl_->memory_model.factor = detail::backend_factor(info.backend);  // the session's work buffers
    impl_->memory_model.touch_flops_per_byte = detail::touch_flops_per_byte(info.backend);
    if (info.patch_auto) info.patch_h = info.patch_w = 0;
}

Upscaler::~Upscaler() = default;
Upscaler::Upscaler(Upscaler&&) noexcept = default;
Upscaler& Upscaler::operator=(Upscaler&&) noexcept = default;

const Info& Upscaler::info() const { return impl_->info; }

std::pair<int, int> Upscaler::output_size(int width, int height) const { return impl_->output_size(width, height); }

Plan Upscaler::plan(int width, int height) const {
    if (width < 1 || height < 1)
        fail(Status::Image, "image is empty (" + std::to_string(height) + "x" + std::to_string(width) + ")");
    const detail::TilePlan p = impl_->lr_plan(height, width);
    Plan out;
    out.patch_h = p.patch_h, out.patch_w = p.patch_w;
    out.tiles = int(p.tiles.size());
    out.crop = p.crop();
    out.overlap = out.crop ? detail::crop_overlap(impl_->info.manifest.shape_rules) : impl_->info.overlap;
    out.pad_top = p.before_h, out.pad_bottom = p.extra_h - p.before_h;
    out.pad_left = p.before_w, out.pad_right = p.extra_w - p.before_w;
    out.computed_pixels = p.computed_pixels();
    return out;
}

void Upscaler::set_noise(double noise, std::uint64_t seed) {
    if (!std::isfinite(noise)) fail(Status::Argument, "noise must be a finite number");
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->noise = noise;
    impl_->seed = seed;
}

void Upscaler::cancel() noexcept { impl_->cancel.store(true); }

std::vector<float> Upscaler::upscale_planes(const float* planes, int height, int width, const Progress& progress) {
    if (!planes) fail(Status::Image, "planes is NULL");
    std::lock_guard<std::mutex> lock(impl_->mutex);
    CancelScope scope{impl_->cancel};
    return impl_->upscale_planes(planes, height, width, progress);
}

void Upscaler::upscale(const ImageView& in, const ImageView& out, const Progress& progress) {
    check_view(in, "input");
    check_view(out, "output");
    const auto size = output_size(in.width, in.height);
    if (out.width != size.first || out.height != size.second || out.channels != in.channels)
        fail(Status::Image, "output buffer is " + std::to_string(out.width) + "x" + std::to_string(out.height) + "x" +
                                std::to_string(out.channels) + ", expected " + std::to_string(size.first) + "x" +
                                std::to_string(size.second) + "x" + std::to_string(in.channels));
    const int h = in.height, w = in.width, channels = in.channels;
    const float peak = peak_of(in.dtype);
    const std::size_t plane = std::size_t(h) * w;
    // pixels = array.astype(float32) / peak; gray is repeated to three planes.
    std::vector<float> color(3 * plane), alpha;
    if (channels == 4) alpha.resize(plane);
    for (int y = 0; y < h; ++y) {
        for (int c = 0; c < 3; ++c) {
            float* row = color.data() + c * plane + std::size_t(y) * w;
            if (c == 0 || channels != 1) load_channel(in, y, channels == 1 ? 0 : c, row);
            else std::copy(color.data() + std::size_t(y) * w, color.data() + std::size_t(y + 1) * w, row);
        }
        if (channels == 4) load_channel(in, y, 3, alpha.data() + std::size_t(y) * w);
    }
    for (float& v : color) v /= peak;
    for (float& v : alpha) v /= peak;
    std::vector<float> result;
    {
        std::lock_guard<std::mutex> lock(impl_->mutex);
        CancelScope scope{impl_->cancel};
        result = impl_->upscale_planes(color.data(), h, w, progress);
    }
    color.clear(), color.shrink_to_fit();
    const int oh = size.second, ow = size.first;
    const std::size_t oplane = std::size_t(oh) * ow;
    std::vector<float> out_alpha;
    if (channels == 4) {
        out_alpha.resize(oplane);
        detail::bicubic_plane(alpha.data(), h, w, out_alpha.data(), oh, ow);
        for (float& a : out_alpha) a = std::fmin(std::fmax(a, 0.0f), 1.0f);  // np.clip
    }
    std::vector<float> gray(channels == 1 ? ow : 0);
    for (int y = 0; y < oh; ++y) {
        const std::size_t i = std::size_t(y) * ow;
        if (channels == 1) {
            // np.tensordot(_LUMA, out, axes=1): float32 dot product over the planes.
            for (int x = 0; x < ow; ++x) {
                float v = LUMA[0] * result[i + x];
                v += LUMA[1] * result[oplane + i + x];
                v += LUMA[2] * result[2 * oplane + i + x];
                gray[std::size_t(x)] = v;
            }
            store_channel(out, y, 0, gray.data());
            continue;
        }
        for (int c = 0; c < 3; ++c) store_channel(out, y, c, result.data() + c * oplane + i);
        if (channels == 4) store_channel(out, y, 3, out_alpha.data() + i);
    }
}

std::string version() {
    return std::to_string(SRX_VERSION_MAJOR) + "." + std::to_string(SRX_VERSION_MINOR) + "." +
           std::to_string(SRX_VERSION_PATCH);
}

}  // namespace srexport
