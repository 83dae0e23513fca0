// Pinning the dynamic dims of ONNX graph inputs, by rewriting the protobuf wire format
// directly (no protobuf library needed). OpenCV 4.6's ONNX importer infers shapes once,
// at import: with symbolic H/W its DepthToSpace and Concat handlers fail, with the
// inputs pinned to the patch shape every zoo graph it understands imports.
//
// Path rewritten: ModelProto.graph (7) -> GraphProto.input (11, ValueInfoProto) ->
// type (2, TypeProto) -> tensor_type (1) -> shape (2, TensorShapeProto) -> dim (1):
// each Dimension becomes {dim_value (1): value}. Every other byte is copied verbatim.
#include <map>

#include "internal.hpp"
#include "protobuf.hpp"

namespace srexport {
namespace detail {
namespace {

void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) out += char((v & 0x7f) | 0x80), v >>= 7;
    out += char(v);
}

void put_bytes(std::string& out, std::uint32_t field, const std::string& payload) {
    put_varint(out, (std::uint64_t(field) << 3) | 2);
    put_varint(out, payload.size());
    out += payload;
}

template <typename F>
std::string rewrite(std::string_view message, F&& on_field) {
    Reader r{message.data(), message.data() + message.size()};
    std::string out;
    out.reserve(message.size());
    while (!r.done()) {
        std::uint32_t number;
        int wire;
        std::string_view payload, raw;
        r.field(number, wire, payload, raw);
        if (!on_field(number, wire, payload, out)) out.append(raw.data(), raw.size());
    }
    return out;
}

std::string shape_proto(const std::vector<std::int64_t>& dims) {
    std::string shape;
    for (std::int64_t d : dims) {
        std::string dim;
        put_varint(dim, (1u << 3) | 0);
        put_varint(dim, std::uint64_t(d));
        put_bytes(shape, 1, dim);
    }
    return shape;
}

std::string value_info_name(std::string_view info) {
    std::string name;
    rewrite(info, [&](std::uint32_t n, int wire, std::string_view payload, std::string&) {
        if (n == 1 && wire == 2) name.assign(payload);
        return false;
    });
    return name;
}

}  // namespace

std::string pin_onnx_input_shapes(const std::string& model,
                                  const std::vector<std::pair<std::string, std::vector<std::int64_t>>>& shapes) {
    std::map<std::string, std::vector<std::int64_t>> wanted(shapes.begin(), shapes.end());
    std::size_t pinned = 0;
    auto tensor_type = [&](const std::vector<std::int64_t>& dims) {
        return [&dims](std::uint32_t n, int wire, std::string_view, std::string& out) {
            if (n != 2 || wire != 2) return false;
            put_bytes(out, 2, shape_proto(dims));
            return true;
        };
    };
    auto graph = [&](std::uint32_t n, int wire, std::string_view payload, std::string& out) {
        if (n != 11 || wire != 2) return false;
        auto it = wanted.find(value_info_name(payload));
        if (it == wanted.end()) return false;
        ++pinned;
        const auto& dims = it->second;
        put_bytes(out, 11, rewrite(payload, [&](std::uint32_t n2, int w2, std::string_view type, std::string& o2) {
                      if (n2 != 2 || w2 != 2) return false;
                      put_bytes(o2, 2, rewrite(type, [&](std::uint32_t n3, int w3, std::string_view tt, std::string& o3) {
                                    if (n3 != 1 || w3 != 2) return false;
                                    put_bytes(o3, 1, rewrite(tt, tensor_type(dims)));
                                    return true;
                                }));
                      return true;
                  }));
        return true;
    };
    std::string out = rewrite(model, [&](std::uint32_t n, int wire, std::string_view payload, std::string& o) {
        if (n != 7 || wire != 2) return false;
        put_bytes(o, 7, rewrite(payload, graph));
        return true;
    });
    if (pinned != wanted.size()) fail(Status::Bundle, "ONNX graph lacks some of the inputs the manifest names");
    return out;
}

}  // namespace detail
}  // namespace srexport
