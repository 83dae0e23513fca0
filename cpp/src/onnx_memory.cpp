// The memory model of a bundle's graph: the twin of srexport/runtime/budget.py
// (_graph_model, _live_peak). The ONNX graph is read (protobuf wire format), its tensor
// shapes inferred at one concrete probe patch for the operators the zoo's graphs use
// (convolutions, element-wise ops, Concat, Pad, Slice, pixel shuffles, and MGBP's Shape /
// Gather / Unsqueeze / Squeeze / Reshape / Transpose), as onnx.shape_inference infers them
// (unknown where it leaves them unknown, see UNKNOWN), and walked in node order, each
// tensor alive from the node that makes it to the last node that reads it; the largest
// sum of live tensor bytes over the probe's input pixels is the graph's bytes per input
// pixel, the initializers' bytes its fixed part. The same inputs give the same two
// numbers as the Python model, so both runtimes pick the same patch for the same budget.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "internal.hpp"
#include "protobuf.hpp"

namespace srexport {
namespace detail {
namespace {

using Dims = std::vector<std::int64_t>;

// Bytes per element by ONNX TensorProto.DataType (budget.py _DTYPE_BYTES; others: 4).
int dtype_bytes(int type) {
    switch (type) {
        case 2: case 3: case 9: return 1;    // uint8, int8, bool
        case 4: case 5: case 10: case 16: return 2;  // uint16, int16, float16, bfloat16
        case 7: case 11: return 8;           // int64, double
        default: return 4;
    }
}

struct Attribute {
    std::int64_t i = 0;
    float f = 0.0f;
    std::string s;
    Dims ints;
    std::string_view tensor;  // TensorProto bytes (Constant's value)
};

struct Node {
    std::string op;
    std::vector<std::string> inputs, outputs;
    std::map<std::string, Attribute> attributes;

    const Attribute* attribute(const char* name) const {
        const auto it = attributes.find(name);
        return it == attributes.end() ? nullptr : &it->second;
    }
    std::int64_t get_int(const char* name, std::int64_t fallback) const {
        const Attribute* a = attribute(name);
        return a ? a->i : fallback;
    }
    Dims get_ints(const char* name) const {
        const Attribute* a = attribute(name);
        return a ? a->ints : Dims();
    }
};

struct TensorInfo {
    Dims dims;
    int type = 1;
    Dims values;  // the integer contents of small int constants (pads, slice bounds)
    bool constant = false;  // `values` holds them: an initializer or a Constant node's output
};

// A dimension ONNX's shape inference leaves unknown. budget.py counts a tensor only when
// every dimension is known, so an unknown one here has to be unknown exactly where
// onnx.shape_inference leaves it unknown: onnx reads Slice bounds and Pad pads only from
// constants (not from the values data propagation computes from Shape, as MGBP track 1's
// crops are), so such a Slice / Pad keeps only its rank, and the unknowns spread through
// what follows by onnx's rules (broadcasting takes a known dimension over an unknown one
// only where the known one exceeds 1).
constexpr std::int64_t UNKNOWN = -1;
bool is_known(std::int64_t d) { return d >= 0; }

struct Graph {
    std::vector<Node> nodes;
    std::map<std::string, TensorInfo> initializers;
    std::vector<std::pair<std::string, int>> inputs;  // (name, elem_type), initializers excluded later
    std::vector<std::string> outputs;
    double weight_bytes = 0.0;
};

// Repeated int64 field, packed (wire 2) or not (wire 0).
void read_ints(Reader& r, int wire, std::string_view payload, Dims& out) {
    if (wire == 0) {
        out.push_back(std::int64_t(r.scalar));
        return;
    }
    Reader packed{payload.data(), payload.data() + payload.size()};
    while (!packed.done()) out.push_back(std::int64_t(packed.varint()));
}

template <typename F>
void fields(std::string_view message, F&& on_field) {
    Reader r{message.data(), message.data() + message.size()};
    while (!r.done()) {
        std::uint32_t number;
        int wire;
        std::string_view payload, raw;
        r.field(number, wire, payload, raw);
        on_field(r, number, wire, payload);
    }
}

TensorInfo read_tensor(std::string_view message, std::string* name = nullptr) {
    TensorInfo t;
    std::string_view raw;
    Dims int_data;
    fields(message, [&](Reader& r, std::uint32_t n, int wire, std::string_view payload) {
        if (n == 1) read_ints(r, wire, payload, t.dims);
        else if (n == 2 && wire == 0) t.type = int(r.scalar);
        else if ((n == 5 || n == 7) && (wire == 0 || wire == 2)) read_ints(r, wire, payload, int_data);  // int32/int64_data
        else if (n == 8 && wire == 2 && name) name->assign(payload);
        else if (n == 9 && wire == 2) raw = payload;
        else if (n == 14 && wire == 0 && r.scalar == 1)
            fail(Status::Bundle, "ONNX graph keeps its weights in external files: the memory model needs one file");
    });
    std::int64_t count = 1;
    for (auto d : t.dims) count *= d;
    if (count <= 64 && (t.type == 7 || t.type == 6)) {  // small int64 / int32 constants
        if (!int_data.empty()) {
            for (auto v : int_data) t.values.push_back(t.type == 6 ? std::int64_t(std::int32_t(v)) : v);
            t.constant = true;
        } else if (raw.size() == std::size_t(count) * dtype_bytes(t.type)) {
            t.constant = true;
            for (std::int64_t i = 0; i < count; ++i) {
                if (t.type == 7) {
                    std::int64_t v;
                    std::memcpy(&v, raw.data() + 8 * i, 8);
                    t.values.push_back(v);
                } else {
                    std::int32_t v;
                    std::memcpy(&v, raw.data() + 4 * i, 4);
                    t.values.push_back(v);
                }
            }
        }
    }
    return t;
}

Node read_node(std::string_view message) {
    Node node;
    fields(message, [&](Reader&, std::uint32_t n, int wire, std::string_view payload) {
        if (wire != 2) return;
        if (n == 1) node.inputs.emplace_back(payload);
        else if (n == 2) node.outputs.emplace_back(payload);
        else if (n == 4) node.op.assign(payload);
        else if (n == 5) {
            std::string name;
            Attribute a;
            fields(payload, [&](Reader& r, std::uint32_t an, int aw, std::string_view ap) {
                if (an == 1 && aw == 2) name.assign(ap);
                else if (an == 2 && aw == 5) {
                    const auto bits = std::uint32_t(r.scalar);
                    std::memcpy(&a.f, &bits, 4);
                } else if (an == 3 && aw == 0) a.i = std::int64_t(r.scalar);
                else if (an == 4 && aw == 2) a.s.assign(ap);
                else if (an == 5 && aw == 2) a.tensor = ap;
                else if (an == 8) read_ints(r, aw, ap, a.ints);
            });
            node.attributes[name] = a;
        }
    });
    return node;
}

Graph read_graph(const std::string& bytes) {
    Graph g;
    std::string_view graph;
    fields(bytes, [&](Reader&, std::uint32_t n, int wire, std::string_view payload) {
        if (n == 7 && wire == 2) graph = payload;
    });
    if (graph.empty()) fail(Status::Bundle, "ONNX file holds no graph");
    fields(graph, [&](Reader&, std::uint32_t n, int wire, std::string_view payload) {
        if (wire != 2) return;
        if (n == 1) {
            g.nodes.push_back(read_node(payload));
        } else if (n == 5) {
            std::string name;
            TensorInfo t = read_tensor(payload, &name);
            double count = 1;
            for (auto d : t.dims) count *= double(d);
            g.weight_bytes += count * dtype_bytes(t.type);
            g.initializers[name] = std::move(t);
        } else if (n == 11 || n == 12) {
            std::string name;
            int type = 1;
            fields(payload, [&](Reader&, std::uint32_t vn, int vw, std::string_view vp) {
                if (vn == 1 && vw == 2) name.assign(vp);
                if (vn == 2 && vw == 2)  // TypeProto.tensor_type.elem_type
                    fields(vp, [&](Reader&, std::uint32_t tn, int tw, std::string_view tp) {
                        if (tn == 1 && tw == 2)
                            fields(tp, [&](Reader& r3, std::uint32_t en, int ew, std::string_view) {
                                if (en == 1 && ew == 0) type = int(r3.scalar);
                            });
                    });
            });
            if (n == 11) g.inputs.emplace_back(name, type);
            else g.outputs.push_back(name);
        }
    });
    return g;
}

// ---- shape inference at the probe (static shapes, the zoo's operators) ---------------
class Shapes {
public:
    explicit Shapes(const Graph& graph) : graph_(graph) {}

    std::map<std::string, TensorInfo> known;

    const TensorInfo& of(const Node& node, std::size_t i) const {
        if (i >= node.inputs.size() || node.inputs[i].empty())
            fail(Status::Bundle, node.op + " node lacks input " + std::to_string(i));
        const auto it = known.find(node.inputs[i]);
        if (it != known.end()) return it->second;
        const auto init = graph_.initializers.find(node.inputs[i]);
        if (init != graph_.initializers.end()) return init->second;
        fail(Status::Bundle, "ONNX graph uses '" + node.inputs[i] + "' before it is made");
    }
    bool has(const Node& node, std::size_t i) const { return i < node.inputs.size() && !node.inputs[i].empty(); }
    bool constant(const Node& node, std::size_t i) const { return !has(node, i) || of(node, i).constant; }
    const Dims& values(const Node& node, std::size_t i) const {
        const TensorInfo& t = of(node, i);
        if (!t.constant)
            fail(Status::Unavailable, "the memory model needs constant " + node.op + " parameters ('" +
                                          node.inputs[i] + "' is computed in the graph): pass an explicit patch");
        return t.values;
    }

    void infer(const Node& node) {
        const std::string& op = node.op;
        TensorInfo out;
        if (op == "Constant") {
            const Attribute* value = node.attribute("value");
            if (!value || value->tensor.empty())
                fail(Status::Unavailable, "the memory model reads Constant nodes with a tensor value only");
            out = read_tensor(value->tensor);
        } else if (op == "Conv" || op == "ConvTranspose") {
            out = conv(node, op == "ConvTranspose");
        } else if (unary(op)) {
            out = computed(of(node, 0));
            if (op == "Cast") out.type = int(node.get_int("to", 1));
            if (op == "QuantizeLinear") out.type = has(node, 2) ? of(node, 2).type : 2;
            if (op == "DequantizeLinear") out.type = of(node, 1).type;
        } else if (binary(op)) {
            out = computed(of(node, 0));
            for (std::size_t i = 1; i < node.inputs.size(); ++i) out.dims = broadcast(out.dims, of(node, i).dims, op);
        } else if (op == "Concat") {
            out = computed(of(node, 0));
            const std::size_t axis = axis_of(node.get_int("axis", 0), out.dims.size(), op);
            for (std::size_t i = 1; i < node.inputs.size(); ++i) {
                const Dims& other = of(node, i).dims;
                if (other.size() != out.dims.size()) fail(Status::Bundle, "Concat node joins tensors of different ranks");
                for (std::size_t a = 0; a < other.size(); ++a) {
                    std::int64_t& d = out.dims[a];
                    if (a == axis) d = is_known(d) && is_known(other[a]) ? d + other[a] : UNKNOWN;
                    else if (!is_known(d)) d = other[a];
                }
            }
        } else if (op == "Pad") {
            out = computed(of(node, 0));
            const std::size_t rank = out.dims.size();
            if (!constant(node, 1) || !constant(node, 3)) {
                out.dims.assign(rank, UNKNOWN);
            } else {
                Dims pads = has(node, 1) ? values(node, 1) : node.get_ints("pads");
                std::vector<std::size_t> axes;
                if (has(node, 3))
                    for (auto a : values(node, 3)) axes.push_back(axis_of(a, rank, op));
                else
                    for (std::size_t a = 0; a < rank; ++a) axes.push_back(a);
                if (pads.size() != 2 * axes.size())
                    fail(Status::Bundle, "Pad node has " + std::to_string(pads.size()) + " pads");
                for (std::size_t k = 0; k < axes.size(); ++k) {
                    std::int64_t& d = out.dims[axes[k]];
                    if (is_known(d)) d += pads[k] + pads[k + axes.size()];
                }
            }
        } else if (op == "Slice") {
            out = slice(node);
        } else if (op == "DepthToSpace" || op == "SpaceToDepth") {
            out = computed(of(node, 0));
            const std::int64_t b = node.get_int("blocksize", 1);
            if (out.dims.size() != 4) fail(Status::Bundle, op + " on a tensor of rank " + std::to_string(out.dims.size()));
            auto times = [](std::int64_t& d, std::int64_t f) { d = is_known(d) ? d * f : UNKNOWN; };
            auto over = [](std::int64_t& d, std::int64_t f) { d = is_known(d) ? d / f : UNKNOWN; };
            if (op == "DepthToSpace") over(out.dims[1], b * b), times(out.dims[2], b), times(out.dims[3], b);
            else times(out.dims[1], b * b), over(out.dims[2], b), over(out.dims[3], b);
        } else if (op == "Shape") {
            // its values are not propagated: no operator here reads them as onnx does (see UNKNOWN)
            const auto rank = std::int64_t(of(node, 0).dims.size());
            auto bound = [&](std::int64_t v) { return std::clamp(v < 0 ? v + rank : v, std::int64_t(0), rank); };
            const std::int64_t start = bound(node.get_int("start", 0)), end = bound(node.get_int("end", rank));
            out.dims = {std::max(std::int64_t(0), end - start)};
            out.type = 7;
        } else if (op == "Gather") {
            const TensorInfo& data = of(node, 0);
            const std::size_t axis = axis_of(node.get_int("axis", 0), data.dims.size(), op);
            out = computed(data);
            const Dims& index = of(node, 1).dims;
            out.dims.erase(out.dims.begin() + std::ptrdiff_t(axis));
            out.dims.insert(out.dims.begin() + std::ptrdiff_t(axis), index.begin(), index.end());
        } else if (op == "Unsqueeze" || op == "Squeeze") {
            out = computed(of(node, 0));
            const Dims axes = has(node, 1) ? values(node, 1) : node.get_ints("axes");
            if (op == "Unsqueeze") {
                const std::size_t rank = out.dims.size() + axes.size();
                std::vector<bool> added(rank, false);
                for (auto a : axes) added[axis_of(a, rank, op)] = true;
                Dims dims;
                std::size_t next = 0;
                for (std::size_t a = 0; a < rank; ++a) dims.push_back(added[a] ? 1 : out.dims.at(next++));
                out.dims = dims;
            } else {
                std::vector<bool> removed(out.dims.size(), axes.empty());
                if (axes.empty())
                    for (std::size_t a = 0; a < out.dims.size(); ++a) removed[a] = out.dims[a] == 1;
                for (auto a : axes) removed[axis_of(a, out.dims.size(), op)] = true;
                Dims dims;
                for (std::size_t a = 0; a < out.dims.size(); ++a)
                    if (!removed[a]) dims.push_back(out.dims[a]);
                out.dims = dims;
            }
        } else if (op == "Reshape") {
            out = reshape(node);
        } else if (op == "Transpose") {
            out = computed(of(node, 0));
            const std::size_t rank = out.dims.size();
            Dims perm = node.get_ints("perm");
            if (perm.empty())
                for (std::size_t a = rank; a-- > 0;) perm.push_back(std::int64_t(a));
            if (perm.size() != rank) fail(Status::Bundle, "Transpose node's perm does not match its input's rank");
            for (std::size_t a = 0; a < rank; ++a) out.dims[a] = of(node, 0).dims[axis_of(perm[a], rank, op)];
        } else {
            fail(Status::Unavailable, "the memory model (patch auto) does not know the ONNX operator " + op +
                                          ": pass an explicit patch");
        }
        if (!node.outputs.empty() && !node.outputs[0].empty()) known[node.outputs[0]] = out;
    }

private:
    // A node's output of the input's type and shape: not a constant.
    static TensorInfo computed(const TensorInfo& input) {
        TensorInfo out;
        out.dims = input.dims;
        out.type = input.type;
        return out;
    }
    static bool unary(const std::string& op) {
        static const std::set<std::string> ops{
            "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "Identity", "Elu", "Selu", "HardSigmoid",
            "Softplus", "Abs", "Neg", "Exp", "Log", "Sqrt", "Erf", "Cast", "QuantizeLinear", "DequantizeLinear",
            "InstanceNormalization", "BatchNormalization", "Round", "Floor", "Ceil", "Reciprocal", "Gelu", "Mish"};
        return ops.count(op) > 0;
    }
    static bool binary(const std::string& op) {
        static const std::set<std::string> ops{"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"};
        return ops.count(op) > 0;
    }
    static std::size_t axis_of(std::int64_t axis, std::size_t rank, const std::string& op) {
        if (axis < 0) axis += std::int64_t(rank);
        if (axis < 0 || axis >= std::int64_t(rank)) fail(Status::Bundle, op + " node has an axis out of range");
        return std::size_t(axis);
    }
    // onnx's multidirectional broadcasting with unknowns: a known dimension above 1 wins;
    // otherwise an unknown one stays unknown; 1 only where every input has 1.
    static Dims broadcast(Dims a, Dims b, const std::string& op) {
        if (a.size() < b.size()) std::swap(a, b);
        const std::size_t shift = a.size() - b.size();
        for (std::size_t i = 0; i < b.size(); ++i) {
            std::int64_t& x = a[i + shift];
            const std::int64_t y = b[i];
            if (is_known(x) && is_known(y) && x != 1 && y != 1 && x != y)
                fail(Status::Bundle, op + " node cannot broadcast its inputs");
            if (is_known(y) && y != 1) x = y;
            else if (!is_known(y) && (!is_known(x) || x == 1)) x = UNKNOWN;
        }
        return a;
    }

    TensorInfo conv(const Node& node, bool transpose) const {
        TensorInfo out = computed(of(node, 0));
        const Dims& x = out.dims;
        const Dims& w = of(node, 1).dims;
        if (x.size() != 4 || w.size() != 4) fail(Status::Bundle, node.op + " on a tensor of rank " + std::to_string(x.size()));
        const std::int64_t group = node.get_int("group", 1);
        Dims kernel = node.get_ints("kernel_shape");
        if (kernel.empty()) kernel = {w[2], w[3]};
        Dims pads = node.get_ints("pads"), strides = node.get_ints("strides"), dilations = node.get_ints("dilations");
        Dims output_padding = node.get_ints("output_padding"), output_shape = node.get_ints("output_shape");
        if (pads.empty()) pads = {0, 0, 0, 0};
        if (strides.empty()) strides = {1, 1};
        if (dilations.empty()) dilations = {1, 1};
        if (output_padding.empty()) output_padding = {0, 0};
        const Attribute* pad_mode = node.attribute("auto_pad");
        const std::string mode = pad_mode ? pad_mode->s : "NOTSET";
        Dims dims{x[0], transpose ? w[1] * group : w[0], 0, 0};
        for (int k = 0; k < 2; ++k) {
            const std::int64_t in = x[std::size_t(2 + k)], s = strides[std::size_t(k)];
            const std::int64_t extent = dilations[std::size_t(k)] * (kernel[std::size_t(k)] - 1) + 1;
            const std::int64_t pad = pads[std::size_t(k)] + pads[std::size_t(k + 2)];
            std::int64_t o;
            if (transpose && !output_shape.empty()) o = output_shape[output_shape.size() - 2 + std::size_t(k)];
            else if (!is_known(in)) o = UNKNOWN;
            else if (transpose) {
                if (mode == "SAME_UPPER" || mode == "SAME_LOWER") o = in * s;
                else o = s * (in - 1) + output_padding[std::size_t(k)] + extent - (mode == "VALID" ? 0 : pad);
            } else if (mode == "SAME_UPPER" || mode == "SAME_LOWER") {
                o = (in + s - 1) / s;
            } else if (mode == "VALID") {
                o = (in - extent) / s + 1;
            } else {
                o = (in + pad - extent) / s + 1;
            }
            dims[std::size_t(2 + k)] = o;
        }
        out.dims = dims;
        return out;
    }

    TensorInfo slice(const Node& node) const {
        TensorInfo out = computed(of(node, 0));
        const std::size_t rank = out.dims.size();
        Dims starts, ends, axes, steps;
        if (has(node, 1)) {
            if (!constant(node, 1) || !constant(node, 2) || !constant(node, 3) || !constant(node, 4)) {
                out.dims.assign(rank, UNKNOWN);  // onnx keeps only the rank (see UNKNOWN)
                return out;
            }
            starts = values(node, 1), ends = values(node, 2);
            if (has(node, 3)) axes = values(node, 3);
            if (has(node, 4)) steps = values(node, 4);
        } else {  // opset < 10: attributes
            starts = node.get_ints("starts"), ends = node.get_ints("ends"), axes = node.get_ints("axes");
        }
        if (axes.empty())
            for (std::size_t a = 0; a < starts.size(); ++a) axes.push_back(std::int64_t(a));
        if (steps.empty()) steps.assign(starts.size(), 1);
        for (std::size_t k = 0; k < starts.size(); ++k) {
            const std::size_t a = axis_of(axes[k], rank, "Slice");
            const std::int64_t dim = out.dims[a], step = steps[k];
            if (step == 0) fail(Status::Bundle, "Slice node has a zero step");
            if (!is_known(dim)) continue;
            auto clamp = [](std::int64_t v, std::int64_t lo, std::int64_t hi) { return std::min(std::max(v, lo), hi); };
            std::int64_t start = starts[k] < 0 ? starts[k] + dim : starts[k];
            std::int64_t end = ends[k] < 0 ? ends[k] + dim : ends[k];
            std::int64_t length;
            if (step > 0) {
                start = clamp(start, 0, dim), end = clamp(end, 0, dim);
                length = end > start ? (end - start + step - 1) / step : 0;
            } else {
                start = clamp(start, 0, dim - 1), end = clamp(end, -1, dim - 1);
                length = start > end ? (start - end - step - 1) / -step : 0;
            }
            out.dims[a] = length;
        }
        return out;
    }

    // Reshape to a constant shape: 0 copies the input's dimension (unless allowzero), -1
    // takes what is left of the element count (unknown when any input dimension is).
    TensorInfo reshape(const Node& node) const {
        const TensorInfo& input = of(node, 0);
        TensorInfo out = computed(input);
        const Dims& shape = values(node, 1);
        const bool allowzero = node.get_int("allowzero", 0) != 0;
        out.dims.clear();
        std::int64_t count = 1, rest = 1;
        bool count_known = true;
        for (auto d : input.dims) is_known(d) ? void(count *= d) : void(count_known = false);
        std::size_t inferred = shape.size();
        for (std::size_t a = 0; a < shape.size(); ++a) {
            std::int64_t d = shape[a];
            if (d == 0 && !allowzero) {
                if (a >= input.dims.size()) fail(Status::Bundle, "Reshape node copies a dimension its input lacks");
                d = input.dims[a];
            } else if (d == -1) {
                if (inferred != shape.size()) fail(Status::Bundle, "Reshape node has two -1 dimensions");
                inferred = a;
            } else if (d < 0) {
                fail(Status::Bundle, "Reshape node has a negative dimension");
            }
            out.dims.push_back(d);
            if (a != inferred) is_known(d) ? void(rest *= d) : void(count_known = false);
        }
        if (inferred != shape.size())
            out.dims[inferred] = count_known && rest > 0 ? count / rest : UNKNOWN;
        return out;
    }

    const Graph& graph_;
};

double tensor_bytes(const TensorInfo& t) {
    if (t.dims.empty()) return 0.0;  // budget.py counts only tensors with a known, positive shape
    double count = 1;
    for (auto d : t.dims) {
        if (d <= 0) return 0.0;
        count *= double(d);
    }
    return count * dtype_bytes(t.type);
}

}  // namespace

double MemoryModel::patch_bytes(int height, int width, int batch) const {
    return fixed + factor * per_pixel * double(height) * double(width) * double(batch);
}

MemoryModel graph_memory_model(const std::string& graph_path, const Manifest& manifest) {
    std::ifstream in(graph_path, std::ios::binary);
    std::stringstream bytes;
    bytes << in.rdbuf();
    if (!in) fail(Status::Bundle, "cannot read " + graph_path);
    const Graph graph = read_graph(bytes.str());

    const ShapeRules& rules = manifest.shape_rules;
    const int probe = rules.legal_at_least(std::max(64, rules.min_size));
    Shapes shapes(graph);
    std::vector<std::string> live;
    for (const auto& input : graph.inputs) {
        if (graph.initializers.count(input.first)) continue;
        TensorInfo t;
        t.type = input.second;
        t.dims = {1, 3, probe, probe};
        for (const auto& n : manifest.noise_inputs)
            if (n.name == input.first) {
                const std::int64_t side = std::int64_t(n.factor) * (probe + 2 * n.border);
                t.dims = {1, n.channels, side, side};
            }
        shapes.known[input.first] = t;
        live.push_back(input.first);
    }
    std::map<std::string, std::size_t> last_use;
    for (std::size_t index = 0; index < graph.nodes.size(); ++index)
        for (const auto& name : graph.nodes[index].inputs) last_use[name] = index;
    for (const auto& name : graph.outputs) last_use[name] = graph.nodes.size();

    auto size_of = [&](const std::string& name) {
        const auto it = shapes.known.find(name);
        return it == shapes.known.end() ? 0.0 : tensor_bytes(it->second);
    };
    auto live_bytes = [&] {
        double sum = 0.0;
        for (const auto& name : live) sum += size_of(name);
        return sum;
    };
    // budget.py counts the convolutions' FLOPs: 2 x each output (Conv) or input (ConvTranspose)
    // element x the weight's (C / groups) x kernel taps
    bool flops_known = true;  // any convolution of unknown shape: 0, as budget.py _conv_flops
    auto product = [&](const Dims& dims, std::size_t from) {
        if (dims.size() <= from) flops_known = false;  // no shape
        double count = 1.0;
        for (std::size_t i = from; i < dims.size(); ++i) {
            if (!is_known(dims[i])) flops_known = false;
            count *= double(dims[i]);
        }
        return count;
    };
    double flops = 0.0;
    double peak = live_bytes();
    for (std::size_t index = 0; index < graph.nodes.size(); ++index) {
        const Node& node = graph.nodes[index];
        shapes.infer(node);
        if ((node.op == "Conv" || node.op == "ConvTranspose") && node.inputs.size() > 1 && !node.outputs.empty()) {
            const auto made = shapes.known.find(node.outputs[0]);
            const Dims none;
            const Dims& scattered = node.op == "ConvTranspose" ? shapes.of(node, 0).dims
                                    : made == shapes.known.end() ? none : made->second.dims;
            flops += 2.0 * product(scattered, 0) * product(shapes.of(node, 1).dims, 1);
        }
        for (const auto& name : node.outputs)
            if (!name.empty() && std::find(live.begin(), live.end(), name) == live.end()) live.push_back(name);
        peak = std::max(peak, live_bytes());
        live.erase(std::remove_if(live.begin(), live.end(),
                                  [&](const std::string& name) {
                                      const auto it = last_use.find(name);
                                      return it == last_use.end() || it->second <= index;
                                  }),
                   live.end());
    }
    MemoryModel model;
    model.per_pixel = peak / (double(probe) * probe);
    model.fixed = graph.weight_bytes;
    model.flops_per_pixel = flops_known ? flops / (double(probe) * probe) : 0.0;
    return model;
}

}  // namespace detail
}  // namespace srexport
