// TensorRT backend (C++ API, TensorRT 10/11; compiled when NvInfer.h and the CUDA toolkit
// are found). Builds a strongly typed engine from the bundle's graph of the requested
// precision (TensorRT 11 takes precision from the graph's own types: FP16 graph, QDQ
// INT8 graph), with one optimization profile covering every tile shape the runtime
// sends (from the smallest legal patch to batch x patch), caches the plan in
// Options::cache_dir under a name that shows why a rebuild happens, runs tiles with
// enqueueV3 on its own stream and blends the outputs on the GPU with the
// srx_blend_accumulate kernel (cuda_blend.cu): patches never travel back to the host.
//
// Written against the documented API; no GPU or TensorRT headers exist where this
// library is developed, so this file is compiled and tested only on machines that have them.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include "../internal.hpp"
#include "cuda_blend.hpp"

namespace fs = std::filesystem;

namespace srexport {
namespace detail {
namespace {

void cuda_check(cudaError_t err, const char* what) {
    if (err != cudaSuccess) fail(Status::Backend, std::string("CUDA: ") + what + ": " + cudaGetErrorString(err));
}

class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* message) noexcept override {
        if (severity <= Severity::kERROR) last = message;
    }
    std::string last;
};

template <typename T>
struct TrtDeleter {
    void operator()(T* p) const { delete p; }
};
template <typename T>
using TrtPtr = std::unique_ptr<T, TrtDeleter<T>>;

std::string trt_version() {
    return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
           std::to_string(NV_TENSORRT_PATCH);
}

struct DeviceBuffer {
    void* p = nullptr;
    std::size_t bytes = 0;
    DeviceBuffer() = default;
    DeviceBuffer(DeviceBuffer&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr, o.bytes = 0; }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void reserve(std::size_t n) {
        if (n <= bytes) return;
        if (p) cudaFree(p);
        p = nullptr;
        cuda_check(cudaMalloc(&p, n), "cudaMalloc");
        bytes = n;
    }
    ~DeviceBuffer() {
        if (p) cudaFree(p);
    }
};

class TrtSession : public Session {
public:
    explicit TrtSession(const SessionRequest& request)
        : manifest_(*request.manifest), max_patch_h_(request.patch_h), max_patch_w_(request.patch_w) {
        const std::string sm = cuda_device_key(request.device);
        cuda_check(cudaSetDevice(request.device), "cudaSetDevice");
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        if (!runtime_) fail(Status::Unavailable, "TensorRT runtime could not be created: " + logger_.last);
        const std::string sha = sha256_file(request.graph).substr(0, 12);
        std::ostringstream key;
        key << manifest_.model << "-" << manifest_.variant << "-x" << manifest_.scale << "." << request.precision << "."
            << sm << ".trt" << trt_version() << ".b" << request.batch << "." << request.patch_h << "x"
            << request.patch_w << "." << sha << ".plan";
        std::string plan;
        fs::path cached;
        if (!request.cache_dir.empty()) {
            cached = fs::path(request.cache_dir) / key.str();
            std::ifstream in(cached, std::ios::binary);
            if (in) {
                std::ostringstream bytes;
                bytes << in.rdbuf();
                plan = bytes.str();
            }
        }
        if (!plan.empty()) engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
        if (!engine_) {  // no plan, or one this TensorRT/GPU cannot load: rebuild from the ONNX
            plan = build(request);
            engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
            if (!engine_) fail(Status::Backend, "TensorRT could not load the engine it built: " + logger_.last);
            if (!cached.empty()) {
                std::error_code ec;
                fs::create_directories(cached.parent_path(), ec);
                const fs::path tmp = cached.string() + ".tmp";
                std::ofstream out(tmp, std::ios::binary);
                out.write(plan.data(), std::streamsize(plan.size()));
                out.close();
                if (out) fs::rename(tmp, cached, ec);  // atomic: a reader never sees half a plan
                else fs::remove(tmp, ec);
            }
        }
        context_.reset(engine_->createExecutionContext());
        if (!context_) fail(Status::Backend, "TensorRT could not create an execution context: " + logger_.last);
        cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate");
    }

    ~TrtSession() override {
        if (stream_) cudaStreamDestroy(stream_);
    }

    std::string name() const override { return "tensorrt"; }

    void run(const std::vector<NamedInput>& inputs, Tensor& output) override {
        const nvinfer1::Dims dims = enqueue(inputs);
        output.shape.assign(dims.d, dims.d + dims.nbDims);
        output.data.resize(std::size_t(output.count()));
        cuda_check(cudaMemcpyAsync(output.data.data(), out_.p, output.data.size() * sizeof(float),
                                   cudaMemcpyDeviceToHost, stream_),
                   "download");
        cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    }

    // The engine's optimisation profile ends at the patch it was built for.
    int max_patch() const override { return std::min(max_patch_h_, max_patch_w_); }

    std::unique_ptr<Accumulator> device_accumulator(int channels, int height, int width, const std::vector<float>& wy,
                                                    const std::vector<float>& wx) override {
        return std::make_unique<CudaBlender>(channels, height, width, wy, wx, stream_);
    }

    void run_and_blend(const std::vector<NamedInput>& inputs, const std::vector<std::pair<int, int>>& offsets,
                       Accumulator& accumulator) override {
        auto* device = dynamic_cast<CudaBlender*>(&accumulator);
        if (!device) return Session::run_and_blend(inputs, offsets, accumulator);
        const nvinfer1::Dims dims = enqueue(inputs);
        device->add_device(static_cast<const float*>(out_.p), int(dims.d[0]), offsets);
    }

private:
    std::string build(const SessionRequest& request) {
        TrtPtr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger_));
        if (!builder) fail(Status::Backend, "TensorRT builder: " + logger_.last);
        const auto flags =
            1U << static_cast<std::uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
        TrtPtr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(flags));
        TrtPtr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger_));
        if (!parser->parseFromFile(request.graph.c_str(), static_cast<int>(nvinfer1::ILogger::Severity::kWARNING))) {
            std::string why = parser->getNbErrors() > 0 ? parser->getError(0)->desc() : logger_.last;
            fail(Status::Backend, "TensorRT cannot parse " + request.graph + ": " + why);
        }
        TrtPtr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
        nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();
        const ShapeRules& rules = manifest_.shape_rules;
        const int lo = rules.legal_at_least(rules.min_size);
        auto set = [&](const char* name, int channels, int factor, int border) {
            auto d = [&](int n, int h, int w) {
                return nvinfer1::Dims4(n, channels, factor * (h + 2 * border), factor * (w + 2 * border));
            };
            profile->setDimensions(name, nvinfer1::OptProfileSelector::kMIN, d(1, lo, lo));
            profile->setDimensions(name, nvinfer1::OptProfileSelector::kOPT,
                                   d(request.batch, request.patch_h, request.patch_w));
            profile->setDimensions(name, nvinfer1::OptProfileSelector::kMAX,
                                   d(request.batch, request.patch_h, request.patch_w));
        };
        set("image", 3, 1, 0);
        for (const auto& n : manifest_.noise_inputs) set(n.name.c_str(), n.channels, n.factor, n.border);
        config->addOptimizationProfile(profile);
        TrtPtr<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
        if (!plan) fail(Status::Backend, "TensorRT could not build an engine for " + request.graph + ": " + logger_.last);
        return std::string(static_cast<const char*>(plan->data()), plan->size());
    }

    // Upload inputs, set shapes and addresses, enqueue; returns the output dims.
    nvinfer1::Dims enqueue(const std::vector<NamedInput>& inputs) {
        if (in_.size() < inputs.size()) in_.resize(inputs.size());
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const Tensor& t = *inputs[i].tensor;
            in_[i].reserve(t.data.size() * sizeof(float));
            cuda_check(cudaMemcpyAsync(in_[i].p, t.data.data(), t.data.size() * sizeof(float), cudaMemcpyHostToDevice,
                                       stream_),
                       "upload");
            nvinfer1::Dims dims;
            dims.nbDims = int(t.shape.size());
            for (int k = 0; k < dims.nbDims; ++k) dims.d[k] = t.shape[std::size_t(k)];
            if (!context_->setInputShape(inputs[i].name.c_str(), dims))
                fail(Status::Backend, "TensorRT refused the shape of input " + inputs[i].name + ": " + logger_.last);
            context_->setTensorAddress(inputs[i].name.c_str(), in_[i].p);
        }
        const char* output = manifest_.outputs.at(0).c_str();
        const nvinfer1::Dims dims = context_->getTensorShape(output);
        std::size_t count = 1;
        for (int k = 0; k < dims.nbDims; ++k) count *= std::size_t(dims.d[k]);
        out_.reserve(count * sizeof(float));
        context_->setTensorAddress(output, out_.p);
        if (!context_->enqueueV3(stream_)) fail(Status::Backend, "TensorRT enqueueV3 failed: " + logger_.last);
        return dims;
    }

    Manifest manifest_;
    int max_patch_h_ = 0, max_patch_w_ = 0;
    Logger logger_;
    TrtPtr<nvinfer1::IRuntime> runtime_;
    TrtPtr<nvinfer1::ICudaEngine> engine_;
    TrtPtr<nvinfer1::IExecutionContext> context_;
    cudaStream_t stream_ = nullptr;
    std::vector<DeviceBuffer> in_;
    DeviceBuffer out_;
};

}  // namespace

std::unique_ptr<Session> open_tensorrt(const SessionRequest& request) {
    return std::make_unique<TrtSession>(request);
}

}  // namespace detail
}  // namespace srexport
