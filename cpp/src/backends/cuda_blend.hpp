// Window blending on the GPU with the kernels of srexport/kernels/srx_blend.cu (the CUDA
// twin of srexport.runtime.blend.Blender, bit-identical to the CPU blender: a
// conflict-free gather adds the patches of a batch in batch order, no atomics). Plain C++
// interface: only cuda_blend.cu needs the CUDA headers.
#ifndef SREXPORT_CUDA_BLEND_HPP
#define SREXPORT_CUDA_BLEND_HPP

#include "../internal.hpp"

namespace srexport {
namespace detail {

class CudaBlender : public Accumulator {
public:
    // stream: a cudaStream_t (nullptr = the default stream).
    CudaBlender(int channels, int height, int width, const std::vector<float>& wy, const std::vector<float>& wx,
                void* stream);
    ~CudaBlender() override;
    CudaBlender(const CudaBlender&) = delete;
    CudaBlender& operator=(const CudaBlender&) = delete;

    // Host patches: uploaded, then blended.
    void add(const float* patches, int n, const std::vector<std::pair<int, int>>& offsets) override;
    // Patches already in device memory (n x C x ph x pw float32), ordered on the stream.
    void add_device(const float* device_patches, int n, const std::vector<std::pair<int, int>>& offsets);
    std::vector<float> result(int top, int left, int height, int width) override;

private:
    int channels_, height_, width_, ph_, pw_;
    void* stream_;
    float *canvas_ = nullptr, *weight_ = nullptr, *wy_ = nullptr, *wx_ = nullptr, *staging_ = nullptr;
    int* offsets_ = nullptr;
    std::size_t staging_floats_ = 0;
    int offsets_capacity_ = 0;
};

// "sm86" for the device, or throws Error(Unavailable) when there is no usable GPU.
std::string cuda_device_key(int device);

}  // namespace detail
}  // namespace srexport

#endif  // SREXPORT_CUDA_BLEND_HPP
