// The runtime: tile an image, run patches on a backend, blend them with a window.
// The twin of srexport/runtime/upscaler.py (Upscaler.upscale_planes, noise_batch,
// upscale_loaded and _upscale_array), step for step.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>

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

float load(const ImageView& v, int y, int x, int c) {
    const std::size_t stride = v.stride ? v.stride : row_bytes(v);
    const unsigned char* row = static_cast<const unsigned char*>(v.data) + std::size_t(y) * stride;
    const std::size_t i = std::size_t(x) * v.channels + c;
    switch (v.dtype) {
        case DType::UInt8: return float(row[i]);
        case DType::UInt16: return float(reinterpret_cast<const std::uint16_t*>(row)[i]);
        case DType::Float32: return reinterpret_cast<const float*>(row)[i];
    }
    return 0.0f;
}

// round(clamp(v, 0, 1) * peak), half to even as numpy.rint; NaN -> 0.
float quantize(float v, float peak) {
    const float c = std::fmin(std::fmax(v, 0.0f), 1.0f);
    return std::nearbyint(c * peak);
}

void store(const ImageView& v, int y, int x, int c, float value) {
    const std::size_t stride = v.stride ? v.stride : row_bytes(v);
    unsigned char* row = static_cast<unsigned char*>(v.data) + std::size_t(y) * stride;
    const std::size_t i = std::size_t(x) * v.channels + c;
    switch (v.dtype) {
        case DType::UInt8: row[i] = static_cast<unsigned char>(quantize(value, 255.0f)); break;
        case DType::UInt16: reinterpret_cast<std::uint16_t*>(row)[i] = static_cast<std::uint16_t>(quantize(value, 65535.0f)); break;
        case DType::Float32: reinterpret_cast<float*>(row)[i] = value; break;
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
                    normal_field(seed, std::uint32_t(16 * index + c), std::int64_t(f) * (tiles[n].first - b),
                                 std::int64_t(f) * (tiles[n].second - b), h, w, dst);
                    for (std::size_t i = 0; i < plane; ++i) dst[i] *= amplitude;
                }
        }
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
        const detail::TilePlan plan =
            detail::plan_tiles(height, width, info.patch_h, info.patch_w, info.overlap, m.shape_rules);
        const std::vector<float> padded = detail::reflect_pad(planes, 3, height, width, plan.extra_h, plan.extra_w);
        upscaled.clear(), upscaled.shrink_to_fit();
        const int s = m.shape_rules.output_scale;
        const int pad_h = height + plan.extra_h, pad_w = width + plan.extra_w;
        std::vector<float> wy = detail::window_1d(info.window, s * plan.patch_h);
        std::vector<float> wx = detail::window_1d(info.window, s * plan.patch_w);
        std::unique_ptr<detail::Accumulator> blender = session->device_accumulator(3, s * pad_h, s * pad_w, wy, wx);
        if (!blender) blender = std::make_unique<detail::CpuBlender>(3, s * pad_h, s * pad_w, wy, wx);

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
            session->run_and_blend(inputs, offsets, *blender);
            if (progress && !progress(std::min(first + info.batch, total), total)) fail(Status::Cancelled, "cancelled");
        }
        return blender->result(s * height, s * width);
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
    if (options.patch_h < 0 || options.patch_w < 0) fail(Status::Argument, "patch must be > 0 (0: the manifest's)");
    info.patch_h = options.patch_h ? options.patch_h : (options.patch_w ? options.patch_w : m.patch);
    info.patch_w = options.patch_w ? options.patch_w : info.patch_h;
    info.overlap = options.overlap == -1 ? m.overlap : options.overlap;
    info.window = options.window;
    info.batch = options.batch;
    info.precision = options.precision;
    // Reject an illegal patch or overlap now, not mid-image (the same checks as plan_tiles).
    detail::plan_tiles(info.patch_h, info.patch_w, info.patch_h, info.patch_w, info.overlap, m.shape_rules);
    impl_->noise = options.noise;
    impl_->seed = options.seed;

    detail::SessionRequest request;
    request.root = bundle_dir;
    request.manifest = &info.manifest;
    request.precision = options.precision;
    // OpenVINO refuses fp16 (and bf16 on CPUs without it) before looking for the graph, as
    // the Python backend does.
    if (options.backend == "openvino") detail::openvino_check_precision(options.precision);
    // bf16 is a compute precision (OpenVINO's), run on the fp32 graph.
    request.graph = detail::graph_path(bundle_dir, m, options.precision == "bf16" ? "fp32" : options.precision);
    request.threads = options.threads > 0 ? options.threads : detail::physical_threads();
    request.batch = info.batch;
    request.patch_h = m.shape_rules.legal_at_least(info.patch_h);
    request.patch_w = m.shape_rules.legal_at_least(info.patch_w);
    request.cache_dir = options.cache_dir;
    request.device = options.device;
    impl_->session = detail::open_session(options.backend, request, info.backend_note);
    info.backend = impl_->session->name();
}

Upscaler::~Upscaler() = default;
Upscaler::Upscaler(Upscaler&&) noexcept = default;
Upscaler& Upscaler::operator=(Upscaler&&) noexcept = default;

const Info& Upscaler::info() const { return impl_->info; }

std::pair<int, int> Upscaler::output_size(int width, int height) const { return impl_->output_size(width, height); }

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
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const std::size_t i = std::size_t(y) * w + x;
            for (int c = 0; c < 3; ++c) color[c * plane + i] = load(in, y, x, channels == 1 ? 0 : c) / peak;
            if (channels == 4) alpha[i] = load(in, y, x, 3) / peak;
        }
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
    for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x) {
            const std::size_t i = std::size_t(y) * ow + x;
            if (channels == 1) {
                // np.tensordot(_LUMA, out, axes=1): float32 dot product over the planes.
                float v = LUMA[0] * result[i];
                v += LUMA[1] * result[oplane + i];
                v += LUMA[2] * result[2 * oplane + i];
                store(out, y, x, 0, v);
            } else {
                for (int c = 0; c < 3; ++c) store(out, y, x, c, result[c * oplane + i]);
                if (channels == 4) store(out, y, x, 3, out_alpha[i]);
            }
        }
}

std::string version() {
    return std::to_string(SRX_VERSION_MAJOR) + "." + std::to_string(SRX_VERSION_MINOR) + "." +
           std::to_string(SRX_VERSION_PATCH);
}

}  // namespace srexport
