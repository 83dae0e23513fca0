// ONNX Runtime backend through its C API (onnxruntime_c_api.h; compiled when the header is
// found). The same library and session options as the Python backend
// (srexport/runtime/backends/onnxruntime.py): ORT_ENABLE_ALL, sequential, intra-op
// threads = the CPUs this process may use, inter-op 1; the CUDA execution provider when
// the library offers it, else the CPU provider.
#include <cstring>
#include <mutex>

#include <onnxruntime_c_api.h>

#include "../internal.hpp"

namespace srexport {
namespace detail {
namespace {

const OrtApi& api() {
    static const OrtApi* p = [] {
        const OrtApi* a = OrtGetApiBase()->GetApi(ORT_API_VERSION);
        if (!a)
            fail(Status::Unavailable, std::string("the ONNX Runtime library is older than the headers libsrexport was "
                                                  "built with (") + OrtGetApiBase()->GetVersionString() + ")");
        return a;
    }();
    return *p;
}

void check(OrtStatus* status, const std::string& what) {
    if (!status) return;
    std::string message = api().GetErrorMessage(status);
    api().ReleaseStatus(status);
    fail(Status::Backend, "ONNX Runtime: " + what + ": " + message);
}

OrtEnv* environment() {
    static OrtEnv* env = [] {
        OrtEnv* e = nullptr;
        check(api().CreateEnv(ORT_LOGGING_LEVEL_ERROR, "srexport", &e), "cannot create the environment");
        return e;
    }();
    return env;
}

template <typename T, void (*Release)(T*)>
struct Owned {
    T* p = nullptr;
    ~Owned() {
        if (p) Release(p);
    }
};

void release_options(OrtSessionOptions* p) { api().ReleaseSessionOptions(p); }
void release_session(OrtSession* p) { api().ReleaseSession(p); }
void release_memory_info(OrtMemoryInfo* p) { api().ReleaseMemoryInfo(p); }
void release_value(OrtValue* p) { api().ReleaseValue(p); }
void release_shape(OrtTensorTypeAndShapeInfo* p) { api().ReleaseTensorTypeAndShapeInfo(p); }

bool provider_available(const char* name) {
    char** names = nullptr;
    int count = 0;
    if (api().GetAvailableProviders(&names, &count) != nullptr) return false;
    bool found = false;
    for (int i = 0; i < count; ++i) found = found || std::strcmp(names[i], name) == 0;
    api().ReleaseAvailableProviders(names, count);
    return found;
}

class OrtSessionImpl : public Session {
public:
    explicit OrtSessionImpl(const SessionRequest& request) : output_(request.manifest->outputs.at(0)) {
        environment();
        Owned<OrtSessionOptions, release_options> options;
        check(api().CreateSessionOptions(&options.p), "cannot create session options");
        check(api().SetIntraOpNumThreads(options.p, request.threads), "SetIntraOpNumThreads");
        check(api().SetInterOpNumThreads(options.p, 1), "SetInterOpNumThreads");
        check(api().SetSessionExecutionMode(options.p, ORT_SEQUENTIAL), "SetSessionExecutionMode");
        check(api().SetSessionGraphOptimizationLevel(options.p, ORT_ENABLE_ALL), "SetSessionGraphOptimizationLevel");
        check(api().SetSessionLogSeverityLevel(options.p, 3), "SetSessionLogSeverityLevel");
        // as the Python runtime: idle intra-op threads sleep, leaving the cores to the caller's work
        check(api().AddSessionConfigEntry(options.p, "session.intra_op.allow_spinning", "0"),
              "AddSessionConfigEntry");
        provider_ = "CPUExecutionProvider";
        if (provider_available("CUDAExecutionProvider")) {
            OrtCUDAProviderOptionsV2* cuda = nullptr;
            if (api().CreateCUDAProviderOptions(&cuda) == nullptr) {
                const std::string device = std::to_string(request.device);
                const char* keys[] = {"device_id"};
                const char* values[] = {device.c_str()};
                OrtStatus* st = api().UpdateCUDAProviderOptions(cuda, keys, values, 1);
                if (!st) st = api().SessionOptionsAppendExecutionProvider_CUDA_V2(options.p, cuda);
                if (!st) provider_ = "CUDAExecutionProvider";
                else api().ReleaseStatus(st);
                api().ReleaseCUDAProviderOptions(cuda);
            }
        }
        check(api().CreateSession(environment(), request.graph.c_str(), options.p, &session_.p),
              "cannot load " + request.graph);
        check(api().CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &memory_.p), "CreateCpuMemoryInfo");
    }

    std::string name() const override { return "onnxruntime"; }

    void run(const std::vector<NamedInput>& inputs, Tensor& output) override {
        std::vector<Owned<OrtValue, release_value>> values(inputs.size());
        std::vector<const char*> names;
        std::vector<const OrtValue*> ptrs;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const Tensor& t = *inputs[i].tensor;
            check(api().CreateTensorWithDataAsOrtValue(memory_.p, const_cast<float*>(t.data.data()),
                                                       t.data.size() * sizeof(float), t.shape.data(), t.shape.size(),
                                                       ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &values[i].p),
                  "cannot wrap input " + inputs[i].name);
            names.push_back(inputs[i].name.c_str());
            ptrs.push_back(values[i].p);
        }
        const char* output_name = output_.c_str();
        Owned<OrtValue, release_value> out;
        check(api().Run(session_.p, nullptr, names.data(), ptrs.data(), ptrs.size(), &output_name, 1, &out.p),
              "run failed");
        Owned<OrtTensorTypeAndShapeInfo, release_shape> info;
        check(api().GetTensorTypeAndShape(out.p, &info.p), "GetTensorTypeAndShape");
        std::size_t rank = 0;
        check(api().GetDimensionsCount(info.p, &rank), "GetDimensionsCount");
        output.shape.assign(rank, 0);
        check(api().GetDimensions(info.p, output.shape.data(), rank), "GetDimensions");
        float* data = nullptr;
        check(api().GetTensorMutableData(out.p, reinterpret_cast<void**>(&data)), "GetTensorMutableData");
        output.data.assign(data, data + output.count());
    }

private:
    std::string output_, provider_;
    Owned<OrtSession, release_session> session_;
    Owned<OrtMemoryInfo, release_memory_info> memory_;
};

}  // namespace

std::unique_ptr<Session> open_onnxruntime(const SessionRequest& request) {
    return std::make_unique<OrtSessionImpl>(request);
}

bool onnxruntime_has_cuda() { return provider_available("CUDAExecutionProvider"); }

}  // namespace detail
}  // namespace srexport
