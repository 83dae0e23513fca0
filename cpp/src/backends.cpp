// Backend selection (the twin of srexport/runtime/backends/__init__.py): "auto" takes the
// first backend that opens, in the order TensorRT, ONNX Runtime, OpenCV DNN, and says
// what it skipped and why. Backends not compiled in answer Status::Unavailable.
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
#ifndef SRX_HAVE_ONNXRUNTIME
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
    if (backend == "opencv") return open_opencv(request);
    if (backend == "onnxruntime") return open_onnxruntime(request);
    if (backend == "tensorrt") return open_tensorrt(request);
    if (backend != "auto")
        fail(Status::Argument, "unknown backend '" + backend + "' (backends: auto, tensorrt, onnxruntime, opencv)");
    using Factory = std::unique_ptr<Session> (*)(const SessionRequest&);
    const std::pair<const char*, Factory> order[] = {
        {"tensorrt", &open_tensorrt}, {"onnxruntime", &open_onnxruntime}, {"opencv", &open_opencv}};
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
#ifdef SRX_HAVE_ONNXRUNTIME
    names.push_back("onnxruntime");
#endif
#ifdef SRX_HAVE_OPENCV
    names.push_back("opencv");
#endif
    return names;
}

}  // namespace srexport
