// Host side of the GPU blender: launches srx_blend_accumulate_f32 / srx_blend_finalize_f32
// from srexport/kernels/srx_blend.cu (compiled into libsrexport with the TensorRT backend,
// and compile-checked by CI wherever nvcc is present).
#include <algorithm>
#include <climits>

#include <cuda_runtime_api.h>

#include "srx_blend.cu"
#include "cuda_blend.hpp"

namespace srexport {
namespace detail {
namespace {

void cuda_check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) fail(Status::Backend, std::string("CUDA: ") + what + ": " + cudaGetErrorString(err));
}

template <typename T>
T* device_alloc(std::size_t count, const char* what) {
    void* p = nullptr;
    cuda_check(cudaMalloc(&p, std::max<std::size_t>(count, 1) * sizeof(T)), what);
    return static_cast<T*>(p);
}

}  // namespace

std::string cuda_device_key(int device) {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0)
        fail(Status::Unavailable, std::string("no CUDA device (") +
                                      (err != cudaSuccess ? cudaGetErrorString(err) : "none found") + ")");
    if (device < 0 || device >= count)
        fail(Status::Argument, "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) +
                                   " present)");
    cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    return "sm" + std::to_string(prop.major) + std::to_string(prop.minor);
}

CudaBlender::CudaBlender(int channels, int height, int width, const std::vector<float>& wy,
                         const std::vector<float>& wx, void* stream)
    : channels_(channels), height_(height), width_(width), ph_(int(wy.size())), pw_(int(wx.size())), stream_(stream) {
    if (channels > SRX_BLEND_MAX_CHANNELS) fail(Status::Internal, "CudaBlender: too many channels");
    auto s = static_cast<cudaStream_t>(stream_);
    const std::size_t plane = std::size_t(height) * width;
    canvas_ = device_alloc<float>(plane * channels, "canvas");
    weight_ = device_alloc<float>(plane, "weight");
    wy_ = device_alloc<float>(wy.size(), "window");
    wx_ = device_alloc<float>(wx.size(), "window");
    cuda_check(cudaMemsetAsync(canvas_, 0, plane * channels * sizeof(float), s), "memset");
    cuda_check(cudaMemsetAsync(weight_, 0, plane * sizeof(float), s), "memset");
    cuda_check(cudaMemcpyAsync(wy_, wy.data(), wy.size() * sizeof(float), cudaMemcpyHostToDevice, s), "upload");
    cuda_check(cudaMemcpyAsync(wx_, wx.data(), wx.size() * sizeof(float), cudaMemcpyHostToDevice, s), "upload");
}

CudaBlender::~CudaBlender() {
    cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
    for (void* p : {static_cast<void*>(canvas_), static_cast<void*>(weight_), static_cast<void*>(wy_),
                    static_cast<void*>(wx_), static_cast<void*>(staging_), static_cast<void*>(offsets_)})
        if (p) cudaFree(p);
}

void CudaBlender::add(const float* patches, int n, const std::vector<std::pair<int, int>>& offsets) {
    const std::size_t count = std::size_t(n) * channels_ * ph_ * pw_;
    auto s = static_cast<cudaStream_t>(stream_);
    if (count > staging_floats_) {
        cuda_check(cudaStreamSynchronize(s), "sync");
        if (staging_) cudaFree(staging_);
        staging_ = device_alloc<float>(count, "staging");
        staging_floats_ = count;
    }
    cuda_check(cudaMemcpyAsync(staging_, patches, count * sizeof(float), cudaMemcpyHostToDevice, s), "upload");
    add_device(staging_, n, offsets);
}

void CudaBlender::add_device(const float* device_patches, int n, const std::vector<std::pair<int, int>>& offsets) {
    auto s = static_cast<cudaStream_t>(stream_);
    const std::size_t patch = std::size_t(channels_) * ph_ * pw_;
    for (int first = 0; first < n; first += SRX_BLEND_MAX_BATCH) {
        const int count = std::min(SRX_BLEND_MAX_BATCH, n - first);
        std::vector<int> flat(std::size_t(count) * 2);
        int y0 = INT_MAX, x0 = INT_MAX, y1 = INT_MIN, x1 = INT_MIN;
        for (int b = 0; b < count; ++b) {
            const auto& o = offsets[std::size_t(first + b)];
            flat[2 * b] = o.first, flat[2 * b + 1] = o.second;
            y0 = std::min(y0, o.first), x0 = std::min(x0, o.second);
            y1 = std::max(y1, o.first + ph_), x1 = std::max(x1, o.second + pw_);
        }
        if (count > offsets_capacity_) {
            cuda_check(cudaStreamSynchronize(s), "sync");
            if (offsets_) cudaFree(offsets_);
            offsets_ = device_alloc<int>(std::size_t(count) * 2, "offsets");
            offsets_capacity_ = count;
        }
        // The offsets buffer is reused by the next launch: copy synchronously with the stream.
        cuda_check(cudaMemcpyAsync(offsets_, flat.data(), flat.size() * sizeof(int), cudaMemcpyHostToDevice, s),
                   "upload offsets");
        const dim3 block(SRX_BLEND_BLOCK_X, SRX_BLEND_BLOCK_Y);
        const dim3 grid((x1 - x0 + SRX_BLEND_BLOCK_X - 1) / SRX_BLEND_BLOCK_X,
                        (y1 - y0 + SRX_BLEND_BLOCK_Y - 1) / SRX_BLEND_BLOCK_Y);
        srx_blend_accumulate_f32<<<grid, block, 0, s>>>(device_patches + std::size_t(first) * patch, count,
                                                        channels_, ph_, pw_, offsets_, wy_, wx_, canvas_, weight_,
                                                        height_, width_, y0, x0);
        cuda_check(cudaGetLastError(), "srx_blend_accumulate_f32");
        cuda_check(cudaStreamSynchronize(s), "srx_blend_accumulate_f32");  // flat / offsets_ reuse
    }
}

std::vector<float> CudaBlender::result(int top, int left, int height, int width) {
    auto s = static_cast<cudaStream_t>(stream_);
    const std::size_t count = std::size_t(height) * width * channels_;
    float* hwc = device_alloc<float>(count, "result");
    const dim3 block(32, 8);
    const dim3 grid((width + 31) / 32, (height + 7) / 8);
    srx_blend_finalize_f32<<<grid, block, 0, s>>>(canvas_, weight_, channels_, height_, width_, top, left, height, width,
                                                  hwc);
    std::vector<float> host(count);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) err = cudaMemcpyAsync(host.data(), hwc, count * sizeof(float), cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
    cudaFree(hwc);
    cuda_check(err, "srx_blend_finalize_f32");
    std::vector<float> planes(count);  // HWC -> CHW
    const std::size_t plane = std::size_t(height) * width;
    for (std::size_t i = 0; i < plane; ++i)
        for (int c = 0; c < channels_; ++c) planes[c * plane + i] = host[i * channels_ + c];
    return planes;
}

}  // namespace detail
}  // namespace srexport
