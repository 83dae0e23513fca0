// srexport-upscale: upscale one PNG with an sr-export bundle, from C++ (the C++ twin of
// `sr-export run BUNDLE in.png -o out.png`).
//
//   srexport-upscale in.png out.png --bundle DIR [--backend auto|tensorrt|openvino|onnxruntime|opencv]
//       [--precision auto|fp32|fp16|bf16|int8] [--patch auto|bundle|N|HxW] [--memory GiB] [--stitch auto|crop|blend]
//       [--overlap PX] [--window hamming|bartlett|none] [--batch B] [--noise W] [--seed N] [--threads N]
//       [--no-verify] [--quiet]
//
// PNG in (8 or 16 bit; gray, RGB, RGBA, palette), PNG out with the input's bit depth.
// Gray+alpha is upscaled as RGBA. Errors: one line on stderr, exit code 2.
#include <png.h>

#include <atomic>
#include <chrono>
#include <csetjmp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "srexport/srexport.hpp"

namespace {

struct Image {
    int width = 0, height = 0, channels = 0, bits = 8;
    std::vector<unsigned char> data;  // HWC, uint8 or native-endian uint16
};

[[noreturn]] void die(const std::string& message) {
    std::fprintf(stderr, "srexport-upscale: %s\n", message.c_str());
    std::exit(2);
}

struct PngError {
    std::string message;
};

void png_error_fn(png_structp png, png_const_charp message) {
    auto* err = static_cast<PngError*>(png_get_error_ptr(png));
    err->message = message;
    png_longjmp(png, 1);
}
void png_warning_fn(png_structp, png_const_charp) {}

Image read_png(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) die(path + ": no such file");
    unsigned char sig[8];
    if (std::fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8)) {
        std::fclose(f);
        die(path + ": not a PNG image (srexport-upscale reads PNG only)");
    }
    PngError err;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_error_fn, png_warning_fn);
    png_infop info = png_create_info_struct(png);
    Image img;
    std::vector<png_bytep> rows;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, nullptr);
        std::fclose(f);
        die(path + ": corrupt or truncated image (" + err.message + ")");
    }
    png_init_io(png, f);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    const int color = png_get_color_type(png, info);
    const int depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
        if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);  // as PIL: P + transparency -> RGBA
    }
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    if (depth == 16) png_set_swap(png);  // PNG is big-endian; uint16 buffers are native (little-endian)
    png_read_update_info(png, info);
    img.width = int(png_get_image_width(png, info));
    img.height = int(png_get_image_height(png, info));
    img.channels = png_get_channels(png, info);
    img.bits = png_get_bit_depth(png, info) == 16 ? 16 : 8;
    const std::size_t stride = png_get_rowbytes(png, info);
    img.data.resize(stride * img.height);
    rows.resize(std::size_t(img.height));
    for (int y = 0; y < img.height; ++y) rows[std::size_t(y)] = img.data.data() + stride * y;
    png_read_image(png, rows.data());
    png_read_end(png, nullptr);
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(f);
    if (img.channels == 2) die(path + ": gray+alpha was not expanded");
    return img;
}

void write_png(const std::string& path, const Image& img) {
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) die("cannot write " + path + ": " + std::strerror(errno));
    PngError err;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_error_fn, png_warning_fn);
    png_infop info = png_create_info_struct(png);
    std::vector<png_bytep> rows(std::size_t(img.height));
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        std::fclose(f);
        std::remove(tmp.c_str());
        die("cannot write " + path + ": " + err.message);
    }
    png_init_io(png, f);
    const int color = img.channels == 1 ? PNG_COLOR_TYPE_GRAY
                      : img.channels == 3 ? PNG_COLOR_TYPE_RGB
                                          : PNG_COLOR_TYPE_RGB_ALPHA;
    png_set_IHDR(png, info, png_uint_32(img.width), png_uint_32(img.height), img.bits, color, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (img.bits == 16) png_set_swap(png);
    const std::size_t stride = std::size_t(img.width) * img.channels * (img.bits / 8);
    for (int y = 0; y < img.height; ++y)
        rows[std::size_t(y)] = const_cast<png_bytep>(img.data.data() + stride * y);
    png_write_image(png, rows.data());
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        die("cannot write " + path + ": " + std::strerror(errno));
    }
}

int to_int(const std::string& flag, const std::string& value) {
    char* end = nullptr;
    const long v = std::strtol(value.c_str(), &end, 10);
    if (value.empty() || *end) die(flag + " expects an integer, got '" + value + "'");
    return int(v);
}

std::atomic<srexport::Upscaler*> running{nullptr};
void on_interrupt(int) {
    if (auto* up = running.load()) up->cancel();  // stop at the next batch, write nothing
}

void usage() {
    std::puts(
        "usage: srexport-upscale IN.png OUT.png --bundle DIR [--backend auto|tensorrt|openvino|onnxruntime|opencv]\n"
        "       [--precision auto|fp32|fp16|bf16|int8] [--patch auto|bundle|N|HxW] [--memory GiB] [--stitch auto|crop|blend]\n"
        "       [--overlap PX] [--window hamming|bartlett|none] [--batch B] [--noise W] [--seed N] [--threads N]\n"
        "       [--cache-dir DIR] [--no-verify] [--quiet]\n"
        "  --patch auto (default): a patch the memory budget allows (--memory, default half the\n"
        "  available RAM); an image that fits runs whole. --stitch auto: crop stitching (exact) where the\n"
        "  network's halo is finite and no --overlap is given, window blending otherwise.");
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> positional;
    std::string bundle;
    srexport::Options options;
    bool quiet = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) die(a + " needs a value");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") return usage(), 0;
        if (a == "--version") return std::printf("srexport-upscale %s\n", srexport::version().c_str()), 0;
        if (a == "--bundle") bundle = value();
        else if (a == "--backend") options.backend = value();
        else if (a == "--precision") options.precision = value();
        else if (a == "--patch") {
            const std::string v = value();
            const auto x = v.find('x');
            if (v == "auto" || v == "bundle") {
                options.patch_h = options.patch_w = v == "auto" ? srexport::PATCH_AUTO : srexport::PATCH_BUNDLE;
                continue;
            }
            options.patch_h = to_int(a, v.substr(0, x));
            options.patch_w = x == std::string::npos ? options.patch_h : to_int(a, v.substr(x + 1));
        } else if (a == "--overlap") options.overlap = to_int(a, value());
        else if (a == "--stitch") options.stitch = value();
        else if (a == "--memory") options.memory_gib = std::atof(value().c_str());
        else if (a == "--window") options.window = value();
        else if (a == "--batch") options.batch = to_int(a, value());
        else if (a == "--noise") options.noise = std::atof(value().c_str());
        else if (a == "--seed") options.seed = std::strtoull(value().c_str(), nullptr, 10);
        else if (a == "--threads") options.threads = to_int(a, value());
        else if (a == "--cache-dir") options.cache_dir = value();
        else if (a == "--no-verify") options.verify_hashes = false;
        else if (a == "--quiet" || a == "-q") quiet = true;
        else if (!a.empty() && a[0] == '-') die("unknown option " + a + " (see --help)");
        else positional.push_back(a);
    }
    if (positional.size() != 2 || bundle.empty()) {
        usage();
        return 2;
    }
    try {
        const auto t0 = std::chrono::steady_clock::now();
        srexport::Upscaler up(bundle, options);
        const srexport::Info& info = up.info();
        Image in = read_png(positional[0]);
        const auto size = up.output_size(in.width, in.height);
        if (!quiet && info.patch_auto) {
            const srexport::Plan plan = up.plan(in.width, in.height);
            std::fprintf(stderr, "%dx%d: %d tile%s of %dx%d\n", in.width, in.height, plan.tiles,
                         plan.tiles == 1 ? "" : "s", plan.patch_w, plan.patch_h);
        }
        Image out;
        out.width = size.first, out.height = size.second, out.channels = in.channels, out.bits = in.bits;
        out.data.resize(std::size_t(out.width) * out.height * out.channels * (out.bits / 8));
        if (!quiet)
            std::fprintf(stderr, "%s %s x%d on %s (%s)%s%s%s%s; %s\n", info.manifest.model.c_str(),
                         info.manifest.variant.c_str(), info.manifest.scale, info.backend.c_str(),
                         info.precision.c_str(), info.backend_note.empty() ? "" : " - ", info.backend_note.c_str(),
                         info.precision_note.empty() ? "" : "; ", info.precision_note.c_str(),
                         info.tiling_note.c_str());
        const srexport::DType dtype = in.bits == 16 ? srexport::DType::UInt16 : srexport::DType::UInt8;
        running = &up;
        std::signal(SIGINT, on_interrupt);
        up.upscale({in.data.data(), in.width, in.height, in.channels, dtype},
                   {out.data.data(), out.width, out.height, out.channels, dtype}, [&](int done, int total) {
                       if (!quiet) std::fprintf(stderr, "\rpatches %d/%d", done, total);
                       return true;
                   });
        running = nullptr;
        write_png(positional[1], out);
        if (!quiet) {
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::fprintf(stderr, "\n%s: %dx%d -> %dx%d in %.2f s\n", positional[1].c_str(), in.width, in.height,
                         out.width, out.height, s);
        }
    } catch (const srexport::Error& e) {
        if (!quiet) std::fputc('\n', stderr);
        die(e.what());
    }
    return 0;
}
