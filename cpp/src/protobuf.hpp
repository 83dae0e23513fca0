// A minimal reader of the protobuf wire format (what ONNX files are), enough to walk a
// ModelProto without the protobuf library: onnx_pin.cpp rewrites graph inputs with it and
// onnx_memory.cpp reads the graph for the memory model.
#ifndef SREXPORT_PROTOBUF_HPP
#define SREXPORT_PROTOBUF_HPP

#include <cstdint>
#include <string_view>

#include "internal.hpp"

namespace srexport {
namespace detail {

struct Reader {
    const char* p;
    const char* end;
    std::uint64_t scalar = 0;  // the value of the last varint / fixed64 / fixed32 field

    bool done() const { return p >= end; }
    std::uint64_t varint() {
        std::uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p >= end) fail(Status::Bundle, "ONNX graph is truncated (varint)");
            const unsigned char b = static_cast<unsigned char>(*p++);
            v |= std::uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        fail(Status::Bundle, "ONNX graph is corrupt (varint)");
    }
    // One field: returns (field, wire type), the payload for length-delimited fields and
    // the raw bytes of the whole field.
    void field(std::uint32_t& number, int& wire, std::string_view& payload, std::string_view& raw) {
        const char* start = p;
        const std::uint64_t tag = varint();
        number = std::uint32_t(tag >> 3), wire = int(tag & 7);
        switch (wire) {
            case 0: scalar = varint(); break;
            case 1: scalar = fixed(8); break;
            case 5: scalar = fixed(4); break;
            case 2: {
                const std::uint64_t n = varint();
                if (n > std::uint64_t(end - p)) fail(Status::Bundle, "ONNX graph is truncated (field length)");
                payload = std::string_view(p, std::size_t(n));
                p += n;
                break;
            }
            default: fail(Status::Bundle, "ONNX graph uses an unsupported protobuf wire type " + std::to_string(wire));
        }
        raw = std::string_view(start, std::size_t(p - start));
    }
    std::uint64_t fixed(std::size_t n) {
        const char* at = p;
        skip(n);
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t(static_cast<unsigned char>(at[i])) << (8 * i);
        return v;
    }
    void skip(std::size_t n) {
        if (n > std::size_t(end - p)) fail(Status::Bundle, "ONNX graph is truncated");
        p += n;
    }
};

}  // namespace detail
}  // namespace srexport

#endif  // SREXPORT_PROTOBUF_HPP
