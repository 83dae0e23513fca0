// OpenVINO backend through its C++ API (openvino::runtime; the `openvino` wheel on PyPI
// ships the SDK). The semantics of srexport/runtime/backends/openvino.py:
//
// - fp32: model.fp32.onnx computed in f32 (INFERENCE_PRECISION_HINT pinned: OpenVINO's
//   own default on AMX CPUs is bf16);
// - bf16: the same graph with INFERENCE_PRECISION_HINT bf16, only on CPUs whose
//   OPTIMIZATION_CAPABILITIES list BF16 (AVX512-BF16 / AMX), refused in one line elsewhere
//   (OpenVINO itself would fall back to f32 without a word);
// - int8: the bundle's QDQ graph model.int8.onnx; the layers it keeps in float run in
//   bf16 where the CPU has BF16, else in f32;
// - fp16: refused (no speed on a CPU).
//
// Input shapes as the Python backend's shapes="auto": networks with a finite halo (patch
// auto gives them a patch per image size) compile once with height and width left dynamic
// (batch and channels fixed), so every tile and image size runs on one compiled model;
// networks with a fixed training patch (no halo: BPP) compile per static shape. Both sides
// then compile the same model: the static compile C++ used before computed MGBP track 2's
// int8 graph 7 LSB away from Python's, and its speed differed from the dynamic one by a few
// percent either way (PCARN-M-L1 x4, 180x320, 2-core Xeon with AMX: fp32 7% more CPU time,
// bf16 3% less, within the 4% by which a second identical compile in a process ran faster). Compiled
// models live in a process-wide cache keyed by (graph digest, precision, threads, hint,
// streams, shapes), shared by every Upscaler.
// A session asked for batches > 1 compiles the one-patch shape with PERFORMANCE_HINT
// THROUGHPUT and runs a batch's patches as concurrent infer requests (one per stream, each
// kept busy); batch 1 compiles with LATENCY (one stream, every thread on the patch).
// Inputs are wrapped, not copied; outputs are blended straight from OpenVINO's tensors.
#include <algorithm>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include <openvino/openvino.hpp>

#include "../internal.hpp"

namespace srexport {
namespace detail {
namespace {

constexpr std::size_t CACHE_SIZE = 8;  // compiled models kept per process (each holds its weights)

std::string first_line(const std::exception& exc) {
    std::string line;
    std::istringstream lines(exc.what());
    while (std::getline(lines, line)) {
        // OpenVINO prefixes messages with "Exception from src/...cpp:NN:" lines.
        if (line.rfind("Exception from ", 0) == 0 || line.empty()) continue;
        break;
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    return line.empty() ? std::string(exc.what()) : line;
}

// The process's one ov::Core, never destroyed: compiled models outlive static destruction
// order otherwise (the plugin libraries would unload first).
ov::Core& core() {
    static ov::Core* instance = [] {
        try {
            return new ov::Core();
        } catch (const std::exception& exc) {
            fail(Status::Unavailable, "OpenVINO cannot start: " + first_line(exc));
        }
    }();
    return *instance;
}

std::set<std::string> cpu_capabilities() {
    const auto caps = core().get_property("CPU", ov::device::capabilities);
    return {caps.begin(), caps.end()};
}

std::string cpu_name() {
    try {
        return core().get_property("CPU", ov::device::full_name);
    } catch (const std::exception&) {
        return "this CPU";
    }
}

bool cpu_has_bf16() { return cpu_capabilities().count(ov::device::capability::BF16) > 0; }

// Refuse, in one line, a precision this backend or this CPU cannot run.
void check_precision(const std::string& precision) {
    if (precision == "fp16")
        fail(Status::Argument, "the openvino backend runs fp32, bf16 and int8, not fp16: on a CPU fp16 brings no "
                               "speed (use precision bf16 or int8; fp16 is for GPU backends)");
    if (precision != "fp32" && precision != "bf16" && precision != "int8")
        fail(Status::Argument, "unknown precision '" + precision + "' for the openvino backend (fp32, bf16, int8)");
    if (precision == "bf16" && !cpu_has_bf16()) {
        std::string offered;
        for (const auto& cap : cpu_capabilities())
            if (cap == "FP32" || cap == "INT8" || cap == "FP16" || cap == "BF16")
                offered += (offered.empty() ? "" : ", ") + cap;
        fail(Status::Unavailable, "bf16 needs a CPU with AVX512-BF16 or AMX; " + cpu_name() + " offers " +
                                      (offered.empty() ? "none" : offered) + ": use precision fp32 or int8");
    }
}

using Shapes = std::vector<std::vector<std::int64_t>>;  // per graph input, in the graph's order

struct CacheKey {
    std::string digest, precision;
    int threads;
    std::string hint;
    int streams;
    Shapes shapes;
    bool operator==(const CacheKey& o) const {
        return digest == o.digest && precision == o.precision && threads == o.threads && hint == o.hint &&
               streams == o.streams && shapes == o.shapes;
    }
};

// A compiled model with its OPTIMAL_NUMBER_OF_INFER_REQUESTS infer requests (one per
// stream), created once; `mutex` serialises the callers that share it.
struct Compiled {
    ov::CompiledModel model;
    std::vector<ov::InferRequest> requests;
    std::mutex mutex;
};

std::mutex g_cache_mutex;
// Never destroyed, as the Core.
std::list<std::pair<CacheKey, std::shared_ptr<Compiled>>>& cache() {
    static auto* entries = new std::list<std::pair<CacheKey, std::shared_ptr<Compiled>>>();
    return *entries;
}

std::string join_shape(const std::vector<std::int64_t>& shape) {
    std::string s;
    for (auto d : shape) s += (s.empty() ? "" : "x") + (d < 0 ? std::string("?") : std::to_string(d));
    return s;
}

class OvSession : public Session {
public:
    explicit OvSession(const SessionRequest& request)
        : manifest_(*request.manifest), precision_(request.precision), threads_(request.threads),
          batch_(request.batch), dynamic_(request.manifest->shape_rules.halo.has_value()) {
        check_precision(precision_);
        inference_precision_ = precision_ == "fp32"   ? ov::element::f32
                               : precision_ == "bf16" ? ov::element::bf16
                               : cpu_has_bf16()       ? ov::element::bf16
                                                      : ov::element::f32;
        const std::string graph_precision = precision_ == "bf16" ? "fp32" : precision_;
        graph_ = graph_path(request.root, manifest_, graph_precision);
        const std::string file = manifest_.precisions.at(graph_precision);
        // The file's digest keys the cache: a rebuilt bundle at the same path recompiles.
        const auto known = manifest_.files.find(file);
        digest_ = known != manifest_.files.end() ? known->second : sha256_file(graph_);
        if (!request.cache_dir.empty()) {
            try {
                core().set_property(ov::cache_dir(request.cache_dir));
            } catch (const std::exception& exc) {
                fail(Status::Argument, "OpenVINO cannot use cache_dir " + request.cache_dir + ": " + first_line(exc));
            }
        }
        try {
            model_ = core().read_model(graph_);
        } catch (const Error&) {
            throw;
        } catch (const std::exception& exc) {
            fail(Status::Backend, "OpenVINO cannot read " + graph_ + ": " + first_line(exc));
        }
        for (const auto& port : model_->inputs()) input_names_.push_back(port.get_any_name());
    }

    std::string name() const override { return "openvino"; }

    void run(const std::vector<NamedInput>& inputs, Tensor& output) override {
        const auto ordered = order(inputs);
        const std::int64_t n = ordered[0]->shape[0];
        output.data.clear();
        feed(ordered, [&](std::int64_t index, const ov::Tensor& result) {
            const auto& dims = result.get_shape();
            const std::size_t per_patch = result.get_size() / dims[0];
            if (output.data.empty()) {
                output.shape.assign(dims.begin(), dims.end());
                output.shape[0] = n;
                output.data.resize(std::size_t(output.count()));
            }
            const float* p = result.data<const float>();
            const std::int64_t first = dims[0] == std::size_t(n) ? 0 : index;
            std::copy(p, p + result.get_size(), output.data.data() + std::size_t(first) * per_patch);
        });
    }

    void run_and_blend(const std::vector<NamedInput>& inputs, const std::vector<std::pair<int, int>>& offsets,
                       Accumulator& accumulator) override {
        const auto ordered = order(inputs);
        feed(ordered, [&](std::int64_t index, const ov::Tensor& result) {
            const int n = int(result.get_shape()[0]);
            if (n == 1) {
                accumulator.add(result.data<const float>(), 1, {offsets[std::size_t(index)]});
            } else {
                accumulator.add(result.data<const float>(), n, offsets);
            }
        });
    }

private:
    // The inputs in the graph's order (the upscaler sends the image, then noise inputs).
    std::vector<const Tensor*> order(const std::vector<NamedInput>& inputs) const {
        std::vector<const Tensor*> ordered;
        for (const auto& name : input_names_) {
            const auto it = std::find_if(inputs.begin(), inputs.end(), [&](const NamedInput& in) { return in.name == name; });
            if (it == inputs.end()) fail(Status::Internal, "no tensor for graph input '" + name + "'");
            ordered.push_back(it->tensor);
        }
        return ordered;
    }

    // THROUGHPUT (streams, one request per patch) for batches, LATENCY for one patch.
    bool throughput() const { return batch_ > 1; }

    // Streams for THROUGHPUT: OpenVINO's choice for the thread budget, except that a batch
    // smaller than the thread count gets one stream per patch (more streams would idle).
    int streams() const { return batch_ > 1 && batch_ < threads_ ? batch_ : 0; }

    // Runs the patches; `sink(index, output)` receives the output of patch `index` (or, in
    // LATENCY mode, of the whole batch at index 0), in patch order.
    template <typename Sink>
    void feed(const std::vector<const Tensor*>& inputs, Sink&& sink) {
        const std::int64_t batch = inputs[0]->shape[0];
        Shapes shapes;
        for (const Tensor* t : inputs) {
            shapes.push_back(t->shape);
            if (throughput()) shapes.back()[0] = 1;
        }
        const auto entry = compiled(shapes);
        std::lock_guard<std::mutex> lock(entry->mutex);
        try {
            if (!throughput()) {
                ov::InferRequest& request = entry->requests[0];
                bind(request, inputs, shapes, 0);
                request.infer();
                sink(0, request.get_output_tensor(0));
                return;
            }
            // Patch i goes to request i mod R as soon as that request has finished patch i - R.
            auto& requests = entry->requests;
            const std::int64_t r = std::int64_t(requests.size());
            for (std::int64_t index = 0; index < batch; ++index) {
                ov::InferRequest& request = requests[std::size_t(index % r)];
                if (index >= r) {
                    request.wait();
                    sink(index - r, request.get_output_tensor(0));
                }
                bind(request, inputs, shapes, index);
                request.start_async();
            }
            for (std::int64_t index = std::max<std::int64_t>(0, batch - r); index < batch; ++index) {
                ov::InferRequest& request = requests[std::size_t(index % r)];
                request.wait();
                sink(index, request.get_output_tensor(0));
            }
        } catch (const Error&) {
            for (auto& request : entry->requests) request.cancel();
            throw;
        } catch (const std::exception& exc) {
            for (auto& request : entry->requests) request.cancel();
            fail(Status::Backend, "OpenVINO failed to run " + graph_ + " (" + manifest_.model + "): " + first_line(exc));
        }
    }

    // Point the request's inputs at patch `index` of each input batch (no copy).
    void bind(ov::InferRequest& request, const std::vector<const Tensor*>& inputs, const Shapes& shapes,
              std::int64_t index) const {
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const std::vector<std::int64_t>& shape = shapes[i];
            std::size_t count = 1;
            for (auto d : shape) count *= std::size_t(d);
            float* data = const_cast<float*>(inputs[i]->data.data()) + std::size_t(index) * count;
            request.set_tensor(input_names_[i], ov::Tensor(ov::element::f32, ov::Shape(shape.begin(), shape.end()), data));
        }
    }

    std::shared_ptr<Compiled> compiled(const Shapes& shapes) {
        const std::string hint = throughput() ? "THROUGHPUT" : "LATENCY";
        Shapes compiled_shapes = shapes;
        if (dynamic_)
            for (auto& shape : compiled_shapes)
                for (std::size_t d = 2; d < shape.size(); ++d) shape[d] = -1;
        const CacheKey key{digest_, precision_, threads_, hint, streams(), compiled_shapes};
        {
            std::lock_guard<std::mutex> lock(g_cache_mutex);
            auto& entries = cache();
            for (auto it = entries.begin(); it != entries.end(); ++it)
                if (it->first == key) {
                    entries.splice(entries.begin(), entries, it);
                    return entries.front().second;
                }
        }
        auto entry = std::make_shared<Compiled>();
        {
            std::lock_guard<std::mutex> lock(model_mutex_);
            try {
                std::map<std::string, ov::PartialShape> input_shapes;
                for (std::size_t i = 0; i < compiled_shapes.size(); ++i) {
                    std::vector<ov::Dimension> dims;
                    for (auto d : compiled_shapes[i]) dims.push_back(d < 0 ? ov::Dimension::dynamic() : ov::Dimension(d));
                    input_shapes[input_names_[i]] = ov::PartialShape(dims);
                }
                model_->reshape(input_shapes);
                ov::AnyMap config{
                    ov::hint::performance_mode(throughput() ? ov::hint::PerformanceMode::THROUGHPUT
                                                            : ov::hint::PerformanceMode::LATENCY),
                    ov::inference_num_threads(threads_), ov::hint::inference_precision(inference_precision_)};
                if (streams()) config.emplace(ov::num_streams(streams()));
                entry->model = core().compile_model(model_, "CPU", config);
            } catch (const std::exception& exc) {
                std::string shown;
                for (std::size_t i = 0; i < compiled_shapes.size(); ++i)
                    shown += (i ? ", " : "") + input_names_[i] + " " + join_shape(compiled_shapes[i]);
                const std::string file = graph_.substr(graph_.find_last_of('/') + 1);
                fail(Status::Backend, "OpenVINO cannot compile " + file + " for " + shown + ": " + first_line(exc));
            }
        }
        const ov::element::Type got = entry->model.get_property(ov::hint::inference_precision);
        if (precision_ == "bf16" && got != ov::element::bf16)
            fail(Status::Backend, "OpenVINO compiled " + graph_ + " in " + got.get_type_name() + ", not bf16, on " +
                                      cpu_name());
        const unsigned count = std::max(1u, entry->model.get_property(ov::optimal_number_of_infer_requests));
        for (unsigned i = 0; i < count; ++i) entry->requests.push_back(entry->model.create_infer_request());
        std::lock_guard<std::mutex> lock(g_cache_mutex);
        auto& entries = cache();
        entries.emplace_front(key, entry);
        while (entries.size() > CACHE_SIZE) entries.pop_back();
        return entry;
    }

    Manifest manifest_;
    std::string precision_;
    int threads_, batch_;
    bool dynamic_;  // height and width left dynamic in the compile (a finite halo)
    ov::element::Type inference_precision_;
    std::string graph_, digest_;
    std::shared_ptr<ov::Model> model_;
    std::mutex model_mutex_;
    std::vector<std::string> input_names_;
};

}  // namespace

std::unique_ptr<Session> open_openvino(const SessionRequest& request) {
    try {
        return std::make_unique<OvSession>(request);
    } catch (const Error&) {
        throw;
    } catch (const std::exception& exc) {
        fail(Status::Backend, "OpenVINO: " + first_line(exc));
    }
}

bool openvino_cpu_has_bf16() { return cpu_has_bf16(); }

bool openvino_compiled() { return true; }

std::set<std::string> openvino_cpu_capabilities() {
    try {
        return cpu_capabilities();
    } catch (const std::exception&) {  // an OpenVINO that cannot start counts as absent
        return {};
    }
}

void openvino_check_precision(const std::string& precision) { check_precision(precision); }

std::size_t openvino_cached_models() {
    std::lock_guard<std::mutex> lock(g_cache_mutex);
    return cache().size();
}

}  // namespace detail
}  // namespace srexport
