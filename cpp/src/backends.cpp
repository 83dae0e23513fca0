// Backend selection (the twin of srexport/runtime/backends/__init__.py): "auto" takes the
// first backend that opens, in the order TensorRT, OpenVINO, ONNX Runtime, OpenCV DNN (as
// Python's auto: a GPU engine first, then OpenVINO on the CPU over the generic runtimes,
// except that ONNX Runtime goes before OpenVINO for the fp32 of the models Python's
// selection.ORT_FP32_MODELS lists, which it runs faster), and says what it skipped and
// why. bf16 runs on OpenVINO only; OpenVINO refuses fp16.
// Backends not compiled in answer Status::Unavailable.
#include <sched.h>
#include <thread>

#include "internal.hpp"

namespace srexport {
namespace detail {

void fail(Status status, const std::string& message) { throw Error(status, message); }

int physical_threads() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

#ifndef SRX_HAVE_OPENCV
std::unique_ptr<Session> open_opencv(const SessionRequest&) {
    fail(Status::Unavailable, "backend 'opencv' is not compiled into this libsrexport (OpenCV's dnn module was "
                              "not found at build time: install libopencv-dnn-dev and rebuild)");
}
#endif
#ifndef SRX_HAVE_OPENVINO
std::unique_ptr<Session> open_openvino(const SessionRequest&) {
    fail(Status::Unavailable, "backend 'openvino' is not compiled into this libsrexport (OpenVINO's CMake package "
                              "was not found at build time: pip install openvino, or pass -DOpenVINO_DIR=<dir>, and "
                              "rebuild)");
}
bool openvino_cpu_has_bf16() { return false; }
bool openvino_compiled() { return false; }
std::set<std::string> openvino_cpu_capabilities() { return {}; }
void openvino_check_precision(const std::string&) {}
std::size_t openvino_cached_models() { return 0; }
#endif
#ifndef SRX_HAVE_ONNXRUNTIME
bool onnxruntime_has_cuda() { return false; }
std::unique_ptr<Session> open_onnxruntime(const SessionRequest&) {
    fail(Status::Unavailable, "backend 'onnxruntime' is not compiled into this libsrexport (no onnxruntime_c_api.h "
                              "at build time: pass -DSREXPORT_ONNXRUNTIME_ROOT=<ORT release folder> and rebuild)");
}
#endif
#ifndef SRX_HAVE_TENSORRT
std::unique_ptr<Session> open_tensorrt(const SessionRequest&) {
    fail(Status::Unavailable, "backend 'tensorrt' is not compiled into this libsrexport (no NvInfer.h and CUDA "
                              "toolkit at build time: pass -DSREXPORT_TENSORRT_ROOT=<TensorRT folder> and rebuild)");
}
#endif

std::unique_ptr<Session> open_session(const std::string& backend, const SessionRequest& request, std::string& note) {
    note.clear();
    const bool known = backend == "auto" || backend == "tensorrt" || backend == "openvino" ||
                       backend == "onnxruntime" || backend == "opencv";
    if (!known)
        fail(Status::Argument,
             "unknown backend '" + backend + "' (backends: auto, tensorrt, openvino, onnxruntime, opencv)");
    if (request.precision == "bf16" && backend != "openvino" && backend != "auto")
        fail(Status::Argument, "bf16 runs on the openvino backend only, not on " + backend +
                                   " (use backend openvino or auto, or precision fp32 or int8)");
    if (backend == "opencv") return open_opencv(request);
    if (backend == "openvino") return open_openvino(request);
    if (backend == "onnxruntime") return open_onnxruntime(request);
    if (backend == "tensorrt") return open_tensorrt(request);
    if (request.precision == "bf16") {
        // Only OpenVINO computes bf16: its refusal (not compiled in, or no BF16 on this CPU)
        // is the answer.
        auto session = open_openvino(request);
        note = "bf16 runs on the OpenVINO CPU backend (BF16 on this CPU: AVX512-BF16/AMX)";
        return session;
    }
    using Factory = std::unique_ptr<Session> (*)(const SessionRequest&);
    std::vector<std::pair<const char*, Factory>> order{{"tensorrt", &open_tensorrt}};
    const bool ort_first = request.precision == "fp32" && request.manifest != nullptr &&
                           request.manifest->model == "pcarn-m";  // selection.ORT_FP32_MODELS
    if (ort_first) order.push_back({"onnxruntime", &open_onnxruntime});
    if (request.precision != "fp16") order.push_back({"openvino", &open_openvino});
    if (!ort_first) order.push_back({"onnxruntime", &open_onnxruntime});
    order.push_back({"opencv", &open_opencv});
    std::string skipped;
    Error last(Status::Unavailable, "no backend");
    for (const auto& entry : order) {
        try {
            auto session = entry.second(request);
            note = skipped;
            return session;
        } catch (const Error& exc) {
            if (exc.status() == Status::Bundle) throw;
            last = exc;
            if (exc.status() != Status::Unavailable) skipped += std::string(skipped.empty() ? "" : "; ") + exc.what();
        }
    }
    if (!skipped.empty()) fail(Status::Backend, "no backend could run " + request.graph + ": " + skipped);
    throw last;
}

}  // namespace detail

std::vector<std::string> compiled_backends() {
    std::vector<std::string> names;
#ifdef SRX_HAVE_TENSORRT
    names.push_back("tensorrt");
#endif
#ifdef SRX_HAVE_OPENVINO
    names.push_back("openvino");
#endif
#ifdef SRX_HAVE_ONNXRUNTIME
    names.push_back("onnxruntime");
#endif
#ifdef SRX_HAVE_OPENCV
    names.push_back("opencv");
#endif
    return names;
}

}  // namespace srexport
