// Tiny bundles for the C++ tests, written without Python: a hand-encoded ONNX graph (a
// 1x1 convolution to 4 * 3 channels, DepthToSpace x2, optionally + a 3-channel noise input at
// the output resolution) plus a manifest.json with the files' SHA-256. Every output pixel
// depends only on its own input pixel, so the tiled result must equal the untiled one.
#ifndef SREXPORT_TESTS_TINY_BUNDLE_HPP
#define SREXPORT_TESTS_TINY_BUNDLE_HPP

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "../src/internal.hpp"

namespace tiny {

inline void varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) out += char((v & 0x7f) | 0x80), v >>= 7;
    out += char(v);
}
inline void tag(std::string& out, int field, int wire) { varint(out, (std::uint64_t(field) << 3) | unsigned(wire)); }
inline void bytes(std::string& out, int field, const std::string& payload) {
    tag(out, field, 2);
    varint(out, payload.size());
    out += payload;
}
inline void integer(std::string& out, int field, std::int64_t v) {
    tag(out, field, 0);
    varint(out, std::uint64_t(v));
}

// ValueInfoProto of a float tensor: dims > 0 fixed, dims <= 0 symbolic ("d<index>").
inline std::string value_info(const std::string& name, const std::vector<std::int64_t>& dims) {
    std::string shape;
    for (std::size_t i = 0; i < dims.size(); ++i) {
        std::string dim;
        if (dims[i] > 0) integer(dim, 1, dims[i]);
        else bytes(dim, 2, name + "_d" + std::to_string(i));
        bytes(shape, 1, dim);
    }
    std::string tensor;
    integer(tensor, 1, 1);  // FLOAT
    bytes(tensor, 2, shape);
    std::string type;
    bytes(type, 1, tensor);
    std::string vi;
    bytes(vi, 1, name);
    bytes(vi, 2, type);
    return vi;
}

inline std::string initializer(const std::string& name, const std::vector<std::int64_t>& dims,
                               const std::vector<float>& values) {
    std::string t;
    for (auto d : dims) integer(t, 1, d);
    integer(t, 2, 1);  // FLOAT
    bytes(t, 8, name);
    bytes(t, 9, std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));
    return t;
}

inline std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                        const std::string& attributes = "") {
    std::string n;
    for (const auto& i : inputs) bytes(n, 1, i);
    bytes(n, 2, output);
    bytes(n, 3, op + "_" + output);
    bytes(n, 4, op);
    n += attributes;
    return n;
}

// The pixel model's weights: conv weight (12 x 3) and bias (12).
struct Weights {
    std::vector<float> w, b;
    Weights() {
        for (int o = 0; o < 12; ++o) {
            for (int k = 0; k < 3; ++k) w.push_back(0.05f * float((o * 7 + k * 3) % 11) - 0.2f);
            b.push_back(0.01f * float(o) - 0.05f);
        }
    }
    // Output (c, 2y+i, 2x+j) of DepthToSpace(DCR) for input pixel rgb.
    float expected(const float* rgb, int c, int i, int j) const {
        const int o = (i * 2 + j) * 3 + c;
        float s = b[std::size_t(o)];
        for (int k = 0; k < 3; ++k) s += w[std::size_t(o * 3 + k)] * rgb[k];
        return s;
    }
};

inline std::string pixel_model(bool noisy) {
    Weights weights;
    std::string graph;
    std::string attr;
    bytes(attr, 1, "blocksize");
    integer(attr, 3, 2);
    integer(attr, 20, 2);  // AttributeProto.type = INT
    std::string block;
    bytes(block, 5, attr);
    std::string kernel;  // kernel_shape = [1, 1] (OpenCV needs it spelled out)
    bytes(kernel, 1, "kernel_shape");
    integer(kernel, 8, 1);
    integer(kernel, 8, 1);
    integer(kernel, 20, 7);  // INTS
    std::string conv;
    bytes(conv, 5, kernel);
    bytes(graph, 1, node("Conv", {"image", "W", "B"}, "features", conv));
    bytes(graph, 1, node("DepthToSpace", {"features"}, noisy ? "clean" : "output", block));
    if (noisy) bytes(graph, 1, node("Add", {"clean", "noise0"}, "output"));
    bytes(graph, 2, "tiny");
    bytes(graph, 5, initializer("W", {12, 3, 1, 1}, weights.w));
    bytes(graph, 5, initializer("B", {12}, weights.b));
    bytes(graph, 11, value_info("image", {0, 3, 0, 0}));
    if (noisy) bytes(graph, 11, value_info("noise0", {0, 3, 0, 0}));
    bytes(graph, 12, value_info("output", {0, 3, 0, 0}));
    std::string opset;
    bytes(opset, 1, "");
    integer(opset, 2, 17);
    std::string model;
    integer(model, 1, 8);  // ir_version
    bytes(model, 2, "srexport-tests");
    bytes(model, 7, graph);
    bytes(model, 8, opset);
    return model;
}

// Write the bundle; returns its directory.
inline std::string write_bundle(const std::filesystem::path& dir, bool noisy, int patch = 16, int overlap = 4,
                                const std::string& task = "sr") {
    std::filesystem::create_directories(dir);
    const std::string model = pixel_model(noisy);
    {
        std::ofstream(dir / "model.fp32.onnx", std::ios::binary) << model;
    }
    const std::string sha = srexport::detail::sha256_hex(model.data(), model.size());
    std::string noise = noisy ? R"([{"name": "noise0", "channels": 3, "factor": 2, "border": 0}])" : "[]";
    std::string inputs = noisy ? R"(["image", "noise0"])" : R"(["image"])";
    std::ofstream(dir / "manifest.json")
        << "{\n  \"model\": \"tiny\", \"variant\": \"pixel\", \"scale\": 2, \"task\": \"" << task
        << "\", \"input_kind\": \"lr\",\n  \"params\": 48, \"inputs\": " << inputs << ", \"noise_inputs\": " << noise
        << ",\n  \"outputs\": [\"output\"],\n  \"shape_rules\": {\"multiple_of\": 1, \"offset\": 0, \"min_size\": 1, "
           "\"output_scale\": 2, \"halo\": 0, \"pad_rule\": \"none\"},\n  \"patch\": "
        << patch << ", \"overlap\": " << overlap
        << ",\n  \"precisions\": {\"fp32\": {\"file\": \"model.fp32.onnx\", \"max_abs_error_vs_torch\": null, "
           "\"psnr_vs_fp32_db\": null, \"psnr_y_db\": null, \"notes\": {}}},\n  \"files\": {\"model.fp32.onnx\": \""
        << sha
        << "\"},\n  \"checkpoint\": null, \"tools\": {}, \"verification\": [], \"value_range\": [0.0, 1.0],\n"
           "  \"channel_order\": \"RGB\", \"layout\": \"NCHW\", \"format_version\": 1\n}\n";
    return dir.string();
}

}  // namespace tiny

#endif  // SREXPORT_TESTS_TINY_BUNDLE_HPP
