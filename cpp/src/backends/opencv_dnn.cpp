// OpenCV DNN backend (Debian's libopencv-dnn-dev, OpenCV 4.x): the CPU backend that
// exists on every machine here, so the C++ path runs end to end without ONNX Runtime.
//
// OpenCV's ONNX importer infers every layer's shape once, at import, and (4.6) fails on
// the zoo's symbolic H/W (DepthToSpace, Concat). So the graph is imported per input
// shape with its inputs pinned to that shape (pin_onnx_input_shapes) and the imported
// nets are kept in a small cache: a tiled image uses one patch shape, plus one for a
// last, smaller batch.
#include <fstream>
#include <list>
#include <sstream>

#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>

#include "../internal.hpp"

namespace srexport {
namespace detail {
namespace {

// The informative line of an OpenCV exception ("Node [DepthToSpace]... parse error: ...").
std::string opencv_reason(const cv::Exception& exc) {
    std::string text = exc.what();
    const auto node = text.find("Node [");
    if (node != std::string::npos) text = text.substr(node);
    std::string line;
    std::istringstream lines(text);
    std::getline(lines, line);
    const auto error = line.find(" error: ");
    if (node == std::string::npos && error != std::string::npos) line = line.substr(error + 8);
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    return line.empty() ? exc.msg : line;
}

class OpenCvSession : public Session {
public:
    explicit OpenCvSession(const SessionRequest& request) : graph_(request.graph), manifest_(*request.manifest) {
        cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
        std::ifstream in(graph_, std::ios::binary);
        if (!in) fail(Status::Bundle, "cannot read " + graph_);
        std::ostringstream bytes;
        bytes << in.rdbuf();
        model_ = bytes.str();
        if (request.threads > 0) cv::setNumThreads(request.threads);
        // Import once at the patch shape now, so a graph OpenCV cannot run fails at open.
        std::vector<std::pair<std::string, std::vector<std::int64_t>>> shapes;
        shapes.push_back({"image", {request.batch, 3, request.patch_h, request.patch_w}});
        for (const auto& n : manifest_.noise_inputs)
            shapes.push_back({n.name, {request.batch, n.channels, n.factor * (request.patch_h + 2 * n.border),
                                       n.factor * (request.patch_w + 2 * n.border)}});
        net_for(shapes);
    }

    std::string name() const override { return "opencv"; }

    void run(const std::vector<NamedInput>& inputs, Tensor& output) override {
        std::vector<std::pair<std::string, std::vector<std::int64_t>>> shapes;
        for (const auto& in : inputs) shapes.push_back({in.name, in.tensor->shape});
        cv::dnn::Net& net = net_for(shapes);
        try {
            for (const auto& in : inputs) {
                std::vector<int> dims(in.tensor->shape.begin(), in.tensor->shape.end());
                cv::Mat blob(int(dims.size()), dims.data(), CV_32F, const_cast<float*>(in.tensor->data.data()));
                net.setInput(blob, in.name);
            }
            cv::Mat out = manifest_.outputs.empty() ? net.forward() : net.forward(manifest_.outputs[0]);
            if (out.type() != CV_32F || out.dims != 4) fail(Status::Backend, "OpenCV DNN returned an unexpected output");
            if (!out.isContinuous()) out = out.clone();
            output.shape = {out.size[0], out.size[1], out.size[2], out.size[3]};
            const float* p = out.ptr<float>();
            output.data.assign(p, p + output.count());
        } catch (const cv::Exception& exc) {
            fail(Status::Backend, "OpenCV DNN " + std::string(CV_VERSION) + " failed to run " + graph_ + " (" +
                                      manifest_.model + "): " + opencv_reason(exc));
        }
    }

private:
    using Shapes = std::vector<std::pair<std::string, std::vector<std::int64_t>>>;

    cv::dnn::Net& net_for(const Shapes& shapes) {
        for (auto it = cache_.begin(); it != cache_.end(); ++it)
            if (it->first == shapes) {
                cache_.splice(cache_.begin(), cache_, it);
                return cache_.front().second;
            }
        const std::string pinned = pin_onnx_input_shapes(model_, shapes);
        cv::dnn::Net net;
        try {
            net = cv::dnn::readNetFromONNX(pinned.data(), pinned.size());
            net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
            net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
        } catch (const cv::Exception& exc) {
            fail(Status::Backend, "OpenCV DNN " + std::string(CV_VERSION) + " cannot import " + graph_ + " (" +
                                      manifest_.model + "): " + opencv_reason(exc));
        }
        cache_.emplace_front(shapes, net);
        if (cache_.size() > 3) cache_.pop_back();
        return cache_.front().second;
    }

    std::string graph_;
    Manifest manifest_;
    std::string model_;
    std::list<std::pair<Shapes, cv::dnn::Net>> cache_;
};

}  // namespace

std::unique_ptr<Session> open_opencv(const SessionRequest& request) {
    return std::make_unique<OpenCvSession>(request);
}

}  // namespace detail
}  // namespace srexport
