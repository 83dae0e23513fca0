// srexport.hpp - the C++17 API of libsrexport: run sr-export bundles without Python.
//
//   srexport::Upscaler up("bundles/pcarn-m-x4");           // backend, precision and patch "auto"
//   auto [ow, oh] = up.output_size(w, h);
//   std::vector<std::uint8_t> out(std::size_t(ow) * oh * 3);
//   up.upscale({pixels, w, h, 3, srexport::DType::UInt8},
//              {out.data(), ow, oh, 3, srexport::DType::UInt8});
//
// The output equals the Python runtime's (srexport.load(bundle).upscale(array)) on the
// same bundle, options and image: same tiles (patch auto from the same memory model and
// budget), same crop stitching or window blending in float32, same padding (pad_align),
// same noise fields for the same seed (Philox4x32-10 + Box-Muller), same bicubic
// pre-upscale (PIL's filter) and the same 8/16-bit quantisation round(clamp(y, 0, 1) * peak).
//
// Errors are thrown as srexport::Error (a std::runtime_error with a Status and a one-line
// message). Thread safety is that of the C API (srexport.h): calls on one Upscaler are
// serialized by an internal mutex; cancel() may be called from any thread; separate
// Upscaler objects share nothing. The C ABI (srexport.h) is the stable binary boundary;
// this C++ API needs the same compiler and standard library as the library was built with.
#ifndef SREXPORT_SREXPORT_HPP
#define SREXPORT_SREXPORT_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "../srexport.h"

namespace srexport {

enum class Status : int {
    Ok = SRX_OK,
    Argument = SRX_ERR_ARGUMENT,
    Bundle = SRX_ERR_BUNDLE,
    Backend = SRX_ERR_BACKEND,
    Unavailable = SRX_ERR_UNAVAILABLE,
    Image = SRX_ERR_IMAGE,
    Shape = SRX_ERR_SHAPE,
    Cancelled = SRX_ERR_CANCELLED,
    OutOfMemory = SRX_ERR_OUT_OF_MEMORY,
    Internal = SRX_ERR_INTERNAL,
};

class SRX_API Error : public std::runtime_error {
public:
    Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    Status status() const noexcept { return status_; }

private:
    Status status_;
};

enum class DType : int { UInt8 = SRX_UINT8, UInt16 = SRX_UINT16, Float32 = SRX_FLOAT32 };

// An interleaved HWC buffer (channels 1, 3 or 4); stride in bytes, 0 = packed.
struct ImageView {
    void* data = nullptr;
    int width = 0;
    int height = 0;
    int channels = 3;
    DType dtype = DType::UInt8;
    std::size_t stride = 0;
};

// Patch sizes of Options (graph input pixels): PATCH_AUTO (both 0, the default) takes a
// patch the memory budget allows (budget.py's rule), an image that fits running whole at its own legal
// size (networks without a finite halo keep the manifest's patch); PATCH_BUNDLE the
// manifest's patch; a positive patch_h (patch_w 0: square) that patch.
constexpr int PATCH_AUTO = SRX_PATCH_AUTO;
constexpr int PATCH_BUNDLE = SRX_PATCH_BUNDLE;

struct Options {
    std::string backend = "auto";  // "auto", "tensorrt", "openvino", "onnxruntime", "opencv"
    // "auto": the fastest precision the bundle holds that this machine runs within its recorded
    // accuracy gate (srexport.runtime.backends.precision_auto's rule for images; Info says which
    // and why); or "fp32", "fp16", "bf16" (openvino), "int8".
    std::string precision = "auto";
    int patch_h = PATCH_AUTO, patch_w = PATCH_AUTO;
    int overlap = -1;  // -1: the manifest's overlap (and crop stitching where it is exact)
    // "auto": crop stitching (exact: overlap 2 * halo, each output pixel from the tile where it
    // lies at least a halo inside) where the halo is finite and the patch leaves room for it,
    // unless an overlap is given; window blending otherwise. "crop" or "blend" to choose.
    std::string stitch = "auto";
    double memory_gib = 0.0;  // budget of patch auto; 0: half of the available RAM
    std::string window = "hamming";
    int batch = 1;
    double noise = 0.0;
    std::uint64_t seed = 0;
    int threads = 0;  // 0: the CPUs this process may use
    bool verify_hashes = true;
    std::string cache_dir;  // TensorRT engine cache ("" = none)
    int device = 0;         // TensorRT CUDA device
};

// The manifest's description of a network's legal input sizes (models/base.py ShapeRules).
struct ShapeRules {
    int multiple_of = 1;
    int offset = 0;
    int min_size = 1;
    int output_scale = 1;
    std::optional<int> halo;  // receptive-field radius in input pixels; none: output depends on the whole patch
    std::string pad_rule;
    std::string pad_align = "end";  // "end": padding after the image; "split": ceil(d/2) before, floor(d/2) after

    bool is_legal(int size) const;
    int legal_at_least(int size) const;
};

struct NoiseInput {
    std::string name;
    int channels = 1;
    int factor = 1;
    int border = 0;
    std::string kind = "normal";  // "normal": W * N(0,1) field; "amplitude": W everywhere
};

// What the build recorded for one precision: what precision "auto" weighs against its gate.
struct PrecisionRecord {
    std::string file;
    std::optional<double> psnr_vs_fp32_db;
    std::optional<double> psnr_y_loss_vs_fp32_db;  // notes: against ground truth, where the build had it
    bool selection_met = false;   // notes.selection.met: int8's build-time accuracy target was met
    bool float_in_trunk = false;  // int8 with layers kept in float inside the network (else: only image-space ends)
};

struct Manifest {
    int format_version = 0;
    std::string model, variant, task, input_kind;
    int scale = 1;
    long long params = 0;
    std::vector<std::string> inputs, outputs;
    std::vector<NoiseInput> noise_inputs;
    ShapeRules shape_rules;
    int patch = 0, overlap = 0;
    std::map<std::string, std::string> precisions;  // precision -> graph file
    std::map<std::string, PrecisionRecord> precision_records;  // precision -> its recorded accuracy
    std::map<std::string, std::string> files;       // file -> SHA-256 (hex)
    std::string channel_order = "RGB";
    double value_range[2] = {0.0, 1.0};
};

// Read (and by default hash-check) a bundle's manifest; throws Error(Status::Bundle).
SRX_API Manifest read_manifest(const std::string& bundle_dir, bool verify_hashes = true);

// What an open Upscaler runs.
struct Info {
    std::string bundle;
    Manifest manifest;
    std::string backend, precision, window;
    std::string backend_note;  // why "auto" chose this backend, or ""
    std::string precision_note;  // why precision "auto" chose this precision, or "" when one was given
    // patch auto: patch_h/patch_w are 0 (chosen per image; see Upscaler::plan).
    int patch_h = 0, patch_w = 0, overlap = 0, batch = 1;
    bool patch_auto = false;
    std::string stitch;            // "auto", "crop" or "blend", as asked
    std::int64_t budget_bytes = 0;  // patch auto's memory budget (0 otherwise)
    std::string budget_source;
    std::string tiling_note;  // the run line's tiling part, as the Python runtime prints it
};

// How one image is tiled (in the graph's input pixels).
struct Plan {
    int patch_h = 0, patch_w = 0;
    int tiles = 0;
    int overlap = 0;  // crop stitching: 2 * halo
    bool crop = false;
    int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;  // reflect padding of a small image
    long long computed_pixels = 0;  // input pixels the network computes (tiles x patch)
};

// Called after each batch of patches; return false to cancel (Error(Status::Cancelled)).
using Progress = std::function<bool(int done, int total)>;

class SRX_API Upscaler {
public:
    explicit Upscaler(const std::string& bundle_dir, const Options& options = Options());
    ~Upscaler();
    Upscaler(Upscaler&&) noexcept;
    Upscaler& operator=(Upscaler&&) noexcept;
    Upscaler(const Upscaler&) = delete;
    Upscaler& operator=(const Upscaler&) = delete;

    const Info& info() const;
    // (width, height) of the output for an input of width x height.
    std::pair<int, int> output_size(int width, int height) const;
    // The tiling of an LR image of width x height (patch auto: chosen from the budget).
    Plan plan(int width, int height) const;
    void set_noise(double noise, std::uint64_t seed);

    // HWC image in, HWC image out (out: output_size, same channels, any dtype).
    void upscale(const ImageView& in, const ImageView& out, const Progress& progress = Progress());

    // The Python Upscaler.upscale_planes: 3xHxW float32 RGB in [0, 1] -> 3x(sH)x(sW)
    // float32, not clamped.
    std::vector<float> upscale_planes(const float* planes, int height, int width,
                                      const Progress& progress = Progress());

    // Stop the running (or next) upscale at its next batch boundary.
    void cancel() noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// srexport.runtime.noise.normal_field, bit for bit: height x width floats, row-major.
SRX_API void normal_field(std::uint64_t seed, std::uint32_t stream, std::int64_t top, std::int64_t left, int height,
                          int width, float* out);
SRX_API std::vector<float> normal_field(std::uint64_t seed, std::uint32_t stream, std::int64_t top,
                                        std::int64_t left, int height, int width);

// Backends compiled into this library, in "auto" order.
SRX_API std::vector<std::string> compiled_backends();
SRX_API std::string version();

}  // namespace srexport

#endif  // SREXPORT_SREXPORT_HPP
