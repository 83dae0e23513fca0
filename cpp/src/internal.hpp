// Internal pieces of libsrexport, each the twin of one module of srexport/runtime/.
#ifndef SREXPORT_INTERNAL_HPP
#define SREXPORT_INTERNAL_HPP

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "srexport/srexport.hpp"

namespace srexport {
namespace detail {

[[noreturn]] void fail(Status status, const std::string& message);

// ---- fsutil.sha256_file ------------------------------------------------------------
std::string sha256_hex(const void* data, std::size_t size);
std::string sha256_file(const std::string& path);  // throws Error(Bundle) when unreadable

// ---- bundle.py ---------------------------------------------------------------------
Manifest parse_manifest(const std::string& text, const std::string& manifest_path);
std::string graph_path(const std::string& root, const Manifest& manifest, const std::string& precision);

// ---- backends/precision_auto.py (precision_auto.cpp) --------------------------------
struct PrecisionMachine {
    std::string backend;  // auto | tensorrt | openvino | onnxruntime | opencv
    bool gpu = false;      // an NVIDIA GPU and TensorRT or ONNX Runtime's CUDA provider to run it
    bool openvino = false;  // OpenVINO compiled in and starting
    std::set<std::string> cpu_caps;   // OpenVINO's OPTIMIZATION_CAPABILITIES
    std::set<std::string> cpu_flags;  // /proc/cpuinfo flags
};
struct PrecisionChoice {
    std::string precision, reason;
};
PrecisionChoice choose_precision(const std::map<std::string, PrecisionRecord>& recorded,
                                 const PrecisionMachine& machine);
PrecisionMachine this_machine(const std::string& backend);
std::set<std::string> cpu_flags(const std::string& cpuinfo = "/proc/cpuinfo");
bool nvidia_gpu_present();  // selection.nvidia_gpu_present: driver device nodes, CUDA_VISIBLE_DEVICES

// ---- noise.py ----------------------------------------------------------------------
std::array<std::uint32_t, 4> philox4x32(std::array<std::uint32_t, 4> counter, std::uint32_t k0, std::uint32_t k1,
                                        int rounds = 10);

// ---- tiler.py ----------------------------------------------------------------------
// Tiling of an image of (height, width) graph input pixels. The image is reflect-padded by
// (extra_h, extra_w) only where it is smaller than one legal patch, before_h / before_w of
// it before the image (the model's pad_align), the rest after. Tiles are (patch_h,
// patch_w) at (top, left) of the padded image. `owned` (crop stitching) gives per tile the
// (top, bottom, left, right) rectangle of the padded image whose output comes from that
// tile alone; empty for window blending.
struct Rect {
    int top, bottom, left, right;
};
struct TilePlan {
    int height = 0, width = 0;
    int patch_h = 0, patch_w = 0;
    int extra_h = 0, extra_w = 0;
    int before_h = 0, before_w = 0;
    std::vector<std::pair<int, int>> tiles;  // (top, left), rows outer
    std::vector<Rect> owned;
    bool crop() const { return !owned.empty(); }
    long long computed_pixels() const { return (long long)tiles.size() * patch_h * patch_w; }
};
std::vector<int> axis_starts(int length, int patch, int overlap);
std::vector<int> axis_cuts(const std::vector<int>& starts, int patch, int length);
int split_pad(int extra, const std::string& align);
int legal_patch(int requested, const ShapeRules& rules);
TilePlan plan_tiles(int height, int width, int patch_h, int patch_w, int overlap, const ShapeRules& rules);
int crop_overlap(const ShapeRules& rules);
bool crop_patch_ok(int patch_h, int patch_w, const ShapeRules& rules);
TilePlan plan_crop(int height, int width, int patch_h, int patch_w, const ShapeRules& rules);

// ---- budget.py ---------------------------------------------------------------------
constexpr double BACKEND_FACTOR = 2.5;  // backend work buffers on top of the graph's live tensors
constexpr double OPENVINO_FACTOR = 1.9;  // budget.py BACKEND_FACTORS["openvino"]
double backend_factor(const std::string& backend);  // a session's name -> its factor (budget.py BACKEND_FACTORS)
constexpr double RAM_FRACTION = 0.5;    // of MemAvailable: the default budget on the CPU
constexpr double MIN_MEMORY_GIB = 1e-3, MAX_MEMORY_GIB = 1048576.0;  // validation.py's bounds of --memory

// budget.py TOUCH_FLOPS_PER_BYTE and CPU_RECOMPUTE: what touching a byte of a CPU run's tiles
// costs in FLOPs per backend, and the most a CPU tiling may compute over the image's pixels
constexpr double TOUCH_FLOPS_PER_BYTE_DEFAULT = 290.0, OPENVINO_TOUCH_FLOPS_PER_BYTE = 60.0;
constexpr double CPU_RECOMPUTE = 1.3;
double touch_flops_per_byte(const std::string& backend);

// Peak bytes of one graph call: fixed (weights) + factor x per_pixel x input pixels x batch;
// and the convolutions' FLOPs per graph input pixel.
struct MemoryModel {
    double per_pixel = 0.0;  // live activation bytes per graph input pixel (graph only)
    double fixed = 0.0;      // weight bytes
    double factor = BACKEND_FACTOR;
    double flops_per_pixel = 0.0;
    double touch_flops_per_byte = TOUCH_FLOPS_PER_BYTE_DEFAULT;
    double patch_bytes(int height, int width, int batch = 1) const;
};
// The model of one ONNX graph of the bundle (onnx_memory.cpp).
MemoryModel graph_memory_model(const std::string& graph_path, const Manifest& manifest);

struct Budget {
    std::int64_t bytes = 0;
    std::string source;  // how it was chosen, for the run line
};
std::int64_t available_memory();  // MemAvailable, else the physical total
Budget default_budget(double memory_gib);  // memory_gib > 0: that; else RAM_FRACTION of available memory
double image_bytes(int height, int width, int output_scale, bool blend);
// The legal (ph, pw) whose call fits what the budget leaves after the image's own buffers;
// false when the whole image fits. Without `recompute` (0) the patch computing the fewest
// pixels on this image; with it (CPU sessions), among the tilings computing at most that many
// times the image's pixels, the one of least FLOPs plus touched bytes (budget.py budget_patch).
// `cap` (0: none) bounds each patch edge (a backend built for at most that shape).
bool budget_patch(const MemoryModel& model, std::int64_t budget, const ShapeRules& rules, int height, int width,
                  int batch, bool blend, int floor, int overlap, std::pair<int, int>& patch, int cap = 0,
                  double recompute = 0.0);

// ---- blend.py ----------------------------------------------------------------------
bool known_window(const std::string& kind);
std::vector<float> window_1d(const std::string& kind, int length);

// Accumulates weighted NCHW output patches into float32 canvases (C x H x W) and a
// weight plane; result() = canvas / weight over a region.
class Accumulator {
public:
    virtual ~Accumulator() = default;
    // A batch of n patches (n x C x ph x pw, float32) at output offsets (top, left).
    virtual void add(const float* patches, int n, const std::vector<std::pair<int, int>>& offsets) = 0;
    // C x height x width: canvas / weight over the region at (top, left).
    virtual std::vector<float> result(int top, int left, int height, int width) = 0;
};

class CpuBlender : public Accumulator {
public:
    CpuBlender(int channels, int height, int width, std::vector<float> wy, std::vector<float> wx);
    void add(const float* patches, int n, const std::vector<std::pair<int, int>>& offsets) override;
    std::vector<float> result(int top, int left, int height, int width) override;

private:
    int channels_, height_, width_;
    std::vector<float> window_;  // ph x pw, outer(wy, wx) in float32
    int ph_, pw_;
    std::vector<float> canvas_, weight_;
};

// Crop stitching (pipeline.py CropStitcher): each tile's output supplies exactly its owned
// rectangle, found by the tile's output offset (tiles of a plan sit at distinct offsets).
class CropStitcher : public Accumulator {
public:
    CropStitcher(int channels, const TilePlan& plan, int scale);
    void add(const float* patches, int n, const std::vector<std::pair<int, int>>& offsets) override;
    std::vector<float> result(int top, int left, int height, int width) override;

private:
    int channels_, s_;
    const TilePlan& plan_;
    std::vector<std::pair<std::pair<int, int>, std::size_t>> index_;  // sorted (output offset, tile)
    std::vector<float> canvas_;  // C x (s * height) x (s * width): the image only
};

// ---- padding.py --------------------------------------------------------------------
// Reflect-pad C planes of height x width by (top, bottom, left, right) (edge mode when the
// image is one pixel thin), as numpy.pad(mode="reflect"), however large the pad.
std::vector<float> reflect_pad(const float* planes, int channels, int height, int width, int top, int bottom,
                               int left, int right);

// ---- resize.py ---------------------------------------------------------------------
void bicubic_plane(const float* in, int height, int width, float* out, int out_height, int out_width);

// ---- backends ----------------------------------------------------------------------
struct Tensor {
    std::vector<std::int64_t> shape;  // NCHW
    std::vector<float> data;
    std::int64_t count() const {
        std::int64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
};

struct NamedInput {
    std::string name;
    const Tensor* tensor;
};

class Session {
public:
    virtual ~Session() = default;
    virtual std::string name() const = 0;
    // Graph inputs by name (image first, then noise inputs) -> the output batch.
    virtual void run(const std::vector<NamedInput>& inputs, Tensor& output) = 0;
    // Backends holding outputs in device memory may blend there: an accumulator that
    // run_and_blend feeds without copying patches back, or nullptr (CPU blending).
    virtual std::unique_ptr<Accumulator> device_accumulator(int /*channels*/, int /*height*/, int /*width*/,
                                                            const std::vector<float>& /*wy*/,
                                                            const std::vector<float>& /*wx*/) {
        return nullptr;
    }
    // The largest patch edge (graph input pixels) this session runs, 0 = any: a backend
    // built for fixed shapes bounds what patch auto may choose.
    virtual int max_patch() const { return 0; }
    virtual void run_and_blend(const std::vector<NamedInput>& inputs,
                               const std::vector<std::pair<int, int>>& offsets, Accumulator& accumulator) {
        Tensor out;
        run(inputs, out);
        accumulator.add(out.data.data(), static_cast<int>(out.shape[0]), offsets);
    }
};

struct SessionRequest {
    std::string root;  // bundle directory
    const Manifest* manifest;
    std::string precision;
    std::string graph;  // path of the precision's ONNX graph
    int threads = 0;
    int batch = 1;
    int patch_h = 0, patch_w = 0;
    std::string cache_dir;
    int device = 0;
};

int physical_threads();

// Each backend's factory; those not compiled in throw Error(Unavailable).
std::unique_ptr<Session> open_opencv(const SessionRequest& request);
std::unique_ptr<Session> open_openvino(const SessionRequest& request);
std::unique_ptr<Session> open_onnxruntime(const SessionRequest& request);
std::unique_ptr<Session> open_tensorrt(const SessionRequest& request);
// "auto": TensorRT, OpenVINO, ONNX Runtime, OpenCV DNN, the first that opens for the
// precision (bf16: OpenVINO only; fp16: not OpenVINO); `note` says what was skipped and why.
std::unique_ptr<Session> open_session(const std::string& backend, const SessionRequest& request, std::string& note);

// OpenVINO's view of this CPU and its process-wide compiled-model cache (false / 0 when
// the backend is not compiled in).
bool openvino_cpu_has_bf16();
bool openvino_compiled();
std::set<std::string> openvino_cpu_capabilities();  // OPTIMIZATION_CAPABILITIES; empty when OpenVINO cannot start
bool onnxruntime_has_cuda();  // ONNX Runtime compiled in with its CUDA execution provider
void openvino_check_precision(const std::string& precision);  // one-line refusal; no-op when not compiled in
std::size_t openvino_cached_models();

// ONNX protobuf surgery for backends that need static shapes: the model bytes with the
// named graph inputs' dims pinned to the given values.
std::string pin_onnx_input_shapes(const std::string& model,
                                  const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& shapes);

}  // namespace detail
}  // namespace srexport

#endif  // SREXPORT_INTERNAL_HPP
