// End to end through the C++ API on tiny hand-made bundles (no Python needed): the
// tiling, blending, noise and image-buffer rules of srexport/runtime/upscaler.py.
// Usage: test_runtime [DIR]  (DIR: where to leave the tiny bundles for later tests)
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "../src/internal.hpp"
#include "check.hpp"
#include "tiny_bundle.hpp"

namespace fs = std::filesystem;
using namespace srexport;

namespace {

fs::path g_root;
std::string g_plain, g_noisy;

void need_opencv() {
    if (srx_backend_available("opencv") == 0) throw check::Skip{"the opencv backend is not compiled in"};
}

Options opts(int patch = 16, int overlap = 4, int batch = 1, const std::string& window = "hamming") {
    Options o;
    o.backend = "opencv";
    o.patch_h = o.patch_w = patch;
    o.overlap = overlap;
    o.batch = batch;
    o.window = window;
    o.threads = 1;
    return o;
}

std::vector<float> ramp_image(int h, int w, int c) {
    std::vector<float> v(std::size_t(h) * w * c);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int k = 0; k < c; ++k)
                v[(std::size_t(y) * w + x) * c + k] = float((y * 37 + x * 11 + k * 53) % 97) / 96.0f;
    return v;
}

// The pixel model's output for an HWC float RGB image, untiled.
std::vector<float> expected_rgb(const std::vector<float>& in, int h, int w) {
    tiny::Weights m;
    std::vector<float> out(std::size_t(4) * h * w * 3);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c)
                for (int i = 0; i < 2; ++i)
                    for (int j = 0; j < 2; ++j)
                        out[(std::size_t(2 * y + i) * 2 * w + 2 * x + j) * 3 + c] =
                            m.expected(&in[(std::size_t(y) * w + x) * 3], c, i, j);
    return out;
}

float max_abs(const std::vector<float>& a, const std::vector<float>& b) {
    float m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

std::vector<float> run_float(Upscaler& up, const std::vector<float>& in, int h, int w, int c) {
    const auto size = up.output_size(w, h);
    std::vector<float> out(std::size_t(size.first) * size.second * c);
    up.upscale({const_cast<float*>(in.data()), w, h, c, DType::Float32},
               {out.data(), size.first, size.second, c, DType::Float32});
    return out;
}

}  // namespace

TEST(tiled_equals_untiled_for_a_pixel_model) {
    need_opencv();
    const int sizes[][2] = {{5, 7}, {16, 16}, {17, 40}, {33, 21}};
    for (const char* window : {"hamming", "bartlett", "none"})
        for (int batch : {1, 3}) {
            Upscaler up(g_plain, opts(16, 4, batch, window));
            for (const auto& s : sizes) {
                const auto in = ramp_image(s[0], s[1], 3);
                const float err = max_abs(run_float(up, in, s[0], s[1], 3), expected_rgb(in, s[0], s[1]));
                if (!(err < 2e-6f))
                    check::report(__FILE__, __LINE__, std::string(window) + " batch " + std::to_string(batch) +
                                                          " size " + std::to_string(s[0]) + "x" +
                                                          std::to_string(s[1]) + ": max error " + std::to_string(err));
            }
        }
}

TEST(uint8_uint16_strides_gray_and_alpha_follow_the_python_rules) {
    need_opencv();
    Upscaler up(g_plain, opts(12, 4));
    const int h = 13, w = 19;
    const auto rgba = ramp_image(h, w, 4);
    // uint8 RGBA in a strided buffer (rows padded by 7 bytes), strided output.
    const std::size_t in_stride = std::size_t(w) * 4 + 7, out_stride = std::size_t(2 * w) * 4 + 5;
    std::vector<unsigned char> in8(in_stride * h), out8(out_stride * 2 * h, 0xAB);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w * 4; ++x)
            in8[y * in_stride + std::size_t(x)] = (unsigned char)std::lrint(rgba[std::size_t(y) * w * 4 + x] * 255.0f);
    up.upscale({in8.data(), w, h, 4, DType::UInt8, in_stride}, {out8.data(), 2 * w, 2 * h, 4, DType::UInt8, out_stride});
    // Reference: float pipeline on the same 8-bit values, then round(clamp(y) * 255).
    std::vector<float> rgb(std::size_t(h) * w * 3), alpha(std::size_t(h) * w);
    for (int i = 0; i < h * w; ++i) {
        for (int c = 0; c < 3; ++c) rgb[std::size_t(i) * 3 + c] = float(in8[(i / w) * in_stride + (i % w) * 4 + c]) / 255.0f;
        alpha[std::size_t(i)] = float(in8[(i / w) * in_stride + (i % w) * 4 + 3]) / 255.0f;
    }
    const auto ref = expected_rgb(rgb, h, w);
    std::vector<float> ref_alpha(std::size_t(4) * h * w);
    detail::bicubic_plane(alpha.data(), h, w, ref_alpha.data(), 2 * h, 2 * w);
    int worst = 0;
    for (int y = 0; y < 2 * h; ++y)
        for (int x = 0; x < 2 * w; ++x) {
            const unsigned char* px = &out8[y * out_stride + std::size_t(x) * 4];
            for (int c = 0; c < 3; ++c) {
                const float v = std::fmin(std::fmax(ref[(std::size_t(y) * 2 * w + x) * 3 + c], 0.f), 1.f);
                worst = std::max(worst, std::abs(int(px[c]) - int(std::nearbyint(v * 255.0f))));
            }
            const float a = std::fmin(std::fmax(ref_alpha[std::size_t(y) * 2 * w + x], 0.f), 1.f);
            CHECK_EQ(int(px[3]), int(std::nearbyint(a * 255.0f)));
        }
    CHECK(worst <= 1);
    for (int y = 0; y < 2 * h; ++y) CHECK_EQ(int(out8[y * out_stride + std::size_t(2 * w) * 4]), 0xAB);  // padding untouched
    // Gray float: the luma of the model's output on the gray image repeated to RGB.
    const auto gray = ramp_image(h, w, 1);
    std::vector<float> rep(std::size_t(h) * w * 3);
    for (std::size_t i = 0; i < gray.size(); ++i) rep[i * 3] = rep[i * 3 + 1] = rep[i * 3 + 2] = gray[i];
    const auto ref_gray = expected_rgb(rep, h, w);
    const auto out_gray = run_float(up, gray, h, w, 1);
    float err = 0;
    for (std::size_t i = 0; i < out_gray.size(); ++i)
        err = std::max(err, std::fabs(out_gray[i] - (0.299f * ref_gray[i * 3] + 0.587f * ref_gray[i * 3 + 1] +
                                                     0.114f * ref_gray[i * 3 + 2])));
    CHECK(err < 2e-6f);
    // uint16 RGB.
    std::vector<std::uint16_t> in16(std::size_t(h) * w * 3), out16(std::size_t(4) * h * w * 3);
    for (std::size_t i = 0; i < in16.size(); ++i) in16[i] = std::uint16_t(rgba[i] * 65535.0f);
    up.upscale({in16.data(), w, h, 3, DType::UInt16}, {out16.data(), 2 * w, 2 * h, 3, DType::UInt16});
    std::vector<float> f16(in16.size());
    for (std::size_t i = 0; i < in16.size(); ++i) f16[i] = float(in16[i]) / 65535.0f;
    const auto ref16 = expected_rgb(f16, h, w);
    int worst16 = 0;
    for (std::size_t i = 0; i < out16.size(); ++i)
        worst16 = std::max(worst16, std::abs(int(out16[i]) - int(std::nearbyint(std::fmin(std::fmax(ref16[i], 0.f), 1.f) * 65535.0f))));
    CHECK(worst16 <= 1);
}

TEST(noise_is_the_whole_image_field_whatever_the_tiling) {
    need_opencv();
    const int h = 21, w = 30;
    const auto in = ramp_image(h, w, 3);
    std::vector<std::vector<float>> field;  // factor 2, border 0: output coordinates; stream = channel
    for (std::uint32_t c = 0; c < 3; ++c) field.push_back(normal_field(1234, c, 0, 0, 2 * h, 2 * w));
    for (int patch : {8, 13, 32}) {
        Options o = opts(patch, patch / 4);
        o.noise = 0.3;
        o.seed = 1234;
        Upscaler up(g_noisy, o);
        const auto noisy = run_float(up, in, h, w, 3);
        const auto clean = expected_rgb(in, h, w);
        float err = 0;
        for (std::size_t i = 0; i < clean.size(); ++i)
            err = std::max(err, std::fabs(noisy[i] - (clean[i] + 0.3f * field[i % 3][i / 3])));
        if (!(err < 4e-6f)) check::report(__FILE__, __LINE__, "patch " + std::to_string(patch) + ": " + std::to_string(err));
        up.set_noise(0.0, 1234);
        CHECK(max_abs(run_float(up, in, h, w, 3), clean) < 2e-6f);
    }
}

TEST(cancel_and_progress) {
    need_opencv();
    Upscaler up(g_plain, opts(8, 2));
    const auto in = ramp_image(30, 30, 3);
    std::vector<float> out(std::size_t(60) * 60 * 3);
    int calls = 0, total = 0;
    CHECK_THROWS(up.upscale({const_cast<float*>(in.data()), 30, 30, 3, DType::Float32}, {out.data(), 60, 60, 3, DType::Float32},
                            [&](int done, int t) { total = t; return ++calls < 2 && done > 0; }),
                 Status::Cancelled, "cancelled");
    CHECK_EQ(calls, 2);
    CHECK_EQ(total, 25);
    up.cancel();  // no call running: cancels the next one
    CHECK_THROWS(run_float(up, in, 30, 30, 3), Status::Cancelled, "cancelled");
    CHECK(max_abs(run_float(up, in, 30, 30, 3), expected_rgb(in, 30, 30)) < 2e-6f);  // the request was consumed
    // From another thread while it runs.
    std::thread canceller;
    bool started = false;
    try {
        up.upscale({const_cast<float*>(in.data()), 30, 30, 3, DType::Float32}, {out.data(), 60, 60, 3, DType::Float32},
                   [&](int, int) {
                       if (!started) started = true, canceller = std::thread([&] { up.cancel(); });
                       if (canceller.joinable()) canceller.join();
                       return true;
                   });
        check::report(__FILE__, __LINE__, "not cancelled");
    } catch (const Error& e) {
        CHECK(e.status() == Status::Cancelled);
    }
}

TEST(handles_run_in_parallel_and_a_shared_handle_serializes) {
    need_opencv();
    const auto in = ramp_image(37, 29, 3);
    const auto expected = expected_rgb(in, 37, 29);
    Upscaler shared(g_plain, opts(12, 4, 2));
    float errors[4] = {1, 1, 1, 1};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            if (t < 2) {  // own handles
                Upscaler own(g_plain, opts(8 + 4 * t, 2));
                errors[t] = max_abs(run_float(own, in, 37, 29, 3), expected);
            } else {  // one handle, two threads
                errors[t] = max_abs(run_float(shared, in, 37, 29, 3), expected);
            }
        });
    for (auto& t : threads) t.join();
    for (float e : errors) CHECK(e < 2e-6f);
}

TEST(bad_options_and_buffers_are_refused_with_one_line) {
    need_opencv();
    Options o = opts();
    o.window = "hann";
    CHECK_THROWS(Upscaler(g_plain, o), Status::Argument, "unknown window 'hann'");
    o = opts();
    o.batch = 0;
    CHECK_THROWS(Upscaler(g_plain, o), Status::Argument, "batch must be >= 1, got 0");
    o = opts();
    o.backend = "cuda";
    CHECK_THROWS(Upscaler(g_plain, o), Status::Argument, "unknown backend 'cuda'");
    o = opts();
    o.precision = "int8";
    CHECK_THROWS(Upscaler(g_plain, o), Status::Bundle, "has no int8 graph (it has: fp32)");
    o = opts(16, 16);
    CHECK_THROWS(Upscaler(g_plain, o), Status::Shape, "overlap 16 must be >= 0 and smaller than the patch (16x16)");
    const std::string critic = tiny::write_bundle(g_root / "critic", false, 16, 4, "critic");
    CHECK_THROWS(Upscaler(critic, opts()), Status::Bundle, "holds a critic network, not a super-resolution one");
    Upscaler up(g_plain, opts());
    CHECK(up.output_size(10, 7) == std::make_pair(20, 14));
    std::vector<float> in(10 * 7 * 3), out(20 * 14 * 3);
    CHECK_THROWS(up.upscale({in.data(), 10, 7, 3, DType::Float32}, {out.data(), 20, 13, 3, DType::Float32}), Status::Image,
                 "expected 20x14x3");
    CHECK_THROWS(up.upscale({in.data(), 10, 7, 2, DType::Float32}, {out.data(), 20, 14, 2, DType::Float32}), Status::Image,
                 "with C in (1, 3, 4)");
    CHECK_THROWS(up.upscale({in.data(), 10, 7, 3, DType::Float32, 8}, {out.data(), 20, 14, 3, DType::Float32}), Status::Image,
                 "stride 8 is smaller than one row");
}

void need_openvino() {
    if (srx_backend_available("openvino") == 0) throw check::Skip{"the openvino backend is not compiled in"};
}

TEST(openvino_tiled_equals_untiled_and_reuses_compiled_models) {
    need_openvino();
    const int sizes[][2] = {{5, 7}, {17, 40}, {33, 21}};
    for (int batch : {1, 3}) {  // LATENCY, and THROUGHPUT with one infer request per patch
        Options o = opts(16, 4, batch);
        o.backend = "openvino";
        Upscaler up(g_plain, o);
        CHECK(up.info().backend == "openvino");
        for (const auto& s : sizes) {
            const auto in = ramp_image(s[0], s[1], 3);
            const float err = max_abs(run_float(up, in, s[0], s[1], 3), expected_rgb(in, s[0], s[1]));
            if (!(err < 2e-6f))
                check::report(__FILE__, __LINE__, "batch " + std::to_string(batch) + " size " + std::to_string(s[0]) +
                                                      "x" + std::to_string(s[1]) + ": max error " + std::to_string(err));
        }
    }
    // Same bundle, options and patch shape in a new handle: no new compile.
    Options o = opts(16, 4, 1);
    o.backend = "openvino";
    const auto in = ramp_image(40, 40, 3);
    Upscaler first(g_plain, o);
    run_float(first, in, 40, 40, 3);
    const std::size_t cached = detail::openvino_cached_models();
    Upscaler again(g_plain, o);
    CHECK(max_abs(run_float(again, in, 40, 40, 3), expected_rgb(in, 40, 40)) < 2e-6f);
    CHECK_EQ(detail::openvino_cached_models(), cached);
    // Another patch: the same compiled model (a finite halo: height and width compiled dynamic).
    o.patch_h = o.patch_w = 20;
    Upscaler other(g_plain, o);
    CHECK(max_abs(run_float(other, in, 40, 40, 3), expected_rgb(in, 40, 40)) < 2e-6f);
    CHECK_EQ(detail::openvino_cached_models(), cached);
}

TEST(openvino_noise_and_auto) {
    need_openvino();
    const int h = 21, w = 30;
    const auto in = ramp_image(h, w, 3);
    Options o = opts(13, 3, 2);
    o.backend = "auto";
    o.noise = 0.3;
    o.seed = 99;
    Upscaler up(g_noisy, o);
    CHECK(up.info().backend == "openvino");  // before OpenCV DNN, as Python's auto
    const auto clean = expected_rgb(in, h, w);
    const auto noisy = run_float(up, in, h, w, 3);
    std::vector<std::vector<float>> field;  // factor 2, border 0: output coordinates; stream = channel
    for (std::uint32_t c = 0; c < 3; ++c) field.push_back(normal_field(99, c, 0, 0, 2 * h, 2 * w));
    float err = 0;
    for (std::size_t i = 0; i < clean.size(); ++i)
        err = std::max(err, std::fabs(noisy[i] - (clean[i] + 0.3f * field[i % 3][i / 3])));
    CHECK(err < 4e-6f);
}

TEST(openvino_refuses_what_it_cannot_run_in_one_line) {
    need_openvino();
    Options o = opts();
    o.backend = "openvino";
    o.precision = "fp16";
    CHECK_THROWS(Upscaler(g_plain, o), Status::Argument, "not fp16: on a CPU fp16 brings no speed");
    o.precision = "int8";
    CHECK_THROWS(Upscaler(g_plain, o), Status::Bundle, "has no int8 graph (it has: fp32)");
    o.precision = "bf16";
    if (detail::openvino_cpu_has_bf16()) {
        Upscaler up(g_plain, o);  // the fp32 graph, computed in bf16
        const auto in = ramp_image(20, 20, 3);
        CHECK(max_abs(run_float(up, in, 20, 20, 3), expected_rgb(in, 20, 20)) < 2e-2f);
    } else {
        CHECK_THROWS(Upscaler(g_plain, o), Status::Unavailable, "bf16 needs a CPU with AVX512-BF16 or AMX");
        o.backend = "auto";
        CHECK_THROWS(Upscaler(g_plain, o), Status::Unavailable, "use precision fp32 or int8");
    }
    o.backend = "opencv";
    CHECK_THROWS(Upscaler(g_plain, o), Status::Argument, "bf16 runs on the openvino backend only, not on opencv");
}

int main(int argc, char** argv) {
    g_root = argc > 1 ? fs::path(argv[1]) : fs::temp_directory_path() / ("srx-runtime-" + std::to_string(::getpid()));
    g_plain = tiny::write_bundle(g_root / "tiny-pixel", false);
    g_noisy = tiny::write_bundle(g_root / "tiny-noisy", true);
    if (argc > 2 && std::string(argv[2]) == "--bundles-only") return 0;
    const int rc = check::run_all();
    if (argc <= 1) fs::remove_all(g_root);
    return rc;
}
