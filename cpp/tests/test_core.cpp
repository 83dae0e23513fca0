// Unit tests of libsrexport's pieces against the Python runtime's definitions (each
// expected value below was produced by, or is stated in, srexport/runtime/*.py).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "../src/internal.hpp"
#include "check.hpp"
#include "tiny_bundle.hpp"

namespace fs = std::filesystem;
using namespace srexport;
using namespace srexport::detail;

TEST(sha256_known_answers) {
    CHECK_EQ(sha256_hex("", 0), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    CHECK_EQ(sha256_hex("abc", 3), std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
             std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    const std::string million(1000000, 'a');
    CHECK_EQ(sha256_hex(million.data(), million.size()),
             std::string("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
}

TEST(philox_matches_random123_known_answers) {
    // tests/test_noise.py: the Random123 kat_vectors for philox4x32_10.
    auto r = philox4x32({0, 0, 0, 0}, 0, 0);
    CHECK(r[0] == 0x6627E8D5u && r[1] == 0xE169C58Du && r[2] == 0xBC57AC4Cu && r[3] == 0x9B00DBD8u);
    r = philox4x32({0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, 0xFFFFFFFFu, 0xFFFFFFFFu);
    CHECK(r[0] == 0x408F276Du && r[1] == 0x41C83B0Eu && r[2] == 0xA20BC7C6u && r[3] == 0x6D5451FDu);
    r = philox4x32({0x243F6A88u, 0x85A308D3u, 0x13198A2Eu, 0x03707344u}, 0xA4093822u, 0x299F31D0u);
    CHECK(r[0] == 0xD16CFE09u && r[1] == 0x94FDCCEBu && r[2] == 0x5001E420u && r[3] == 0x24126EA1u);
}

TEST(noise_field_is_a_function_of_position_not_of_the_crop) {
    const auto whole = normal_field(7, 0, -8, -8, 64, 80);
    const auto crop = normal_field(7, 0, 5, 11, 20, 30);
    for (int y = 0; y < 20; ++y)
        for (int x = 0; x < 30; ++x) CHECK_EQ(crop[std::size_t(y) * 30 + x], whole[std::size_t(y + 13) * 80 + x + 19]);
    const auto a = normal_field(1, 0, 0, 0, 256, 256);
    double mean = 0, var = 0;
    for (float v : a) mean += v;
    mean /= double(a.size());
    for (float v : a) var += (v - mean) * (v - mean);
    var /= double(a.size());
    CHECK(std::fabs(mean) < 0.01 && std::fabs(std::sqrt(var) - 1.0) < 0.01);
}

TEST(axis_starts_cover_the_axis_and_end_on_it) {
    CHECK(axis_starts(10, 16, 4) == std::vector<int>{0});
    CHECK(axis_starts(16, 16, 4) == std::vector<int>{0});
    CHECK((axis_starts(40, 16, 4) == std::vector<int>{0, 12, 24}));
    CHECK((axis_starts(41, 16, 4) == std::vector<int>{0, 12, 24, 25}));
}

TEST(plan_tiles_matches_the_python_rules) {
    ShapeRules rules;
    rules.multiple_of = 16, rules.offset = 15, rules.min_size = 31, rules.output_scale = 1;  // MGBPv2's
    const TilePlan plan = plan_tiles(20, 100, 47, 47, 8, rules);
    CHECK_EQ(plan.patch_h, 31);  // shrunk to the smallest legal size >= 20
    CHECK_EQ(plan.patch_w, 47);
    CHECK_EQ(plan.extra_h, 11);
    CHECK_EQ(plan.extra_w, 0);
    CHECK_EQ(plan.tiles.size(), std::size_t(3));
    CHECK_THROWS(plan_tiles(20, 20, 30, 30, 8, rules), Status::Shape, "patch 30 is smaller than the model's minimum 31");
    CHECK_THROWS(plan_tiles(20, 20, 31, 31, 31, rules), Status::Shape, "overlap 31 must be >= 0 and smaller than the patch (31x31)");
    CHECK_THROWS(plan_tiles(0, 20, 31, 31, 4, rules), Status::Shape, "empty image (0x20)");
}

TEST(windows_are_sampled_at_pixel_centres) {
    const auto h = window_1d("hamming", 4);
    CHECK(std::fabs(h[0] - float(0.54 - 0.46 * std::cos(2 * M_PI * 0.125))) == 0.0f);
    CHECK(h[0] == h[3] && h[1] == h[2] && h[0] > 0.0f);
    const auto b = window_1d("bartlett", 4);
    CHECK(b[0] == 0.25f && b[1] == 0.75f);
    const auto n = window_1d("none", 3);
    CHECK(n[0] == 1.0f && n[2] == 1.0f);
    CHECK_THROWS(window_1d("hann", 3), Status::Argument, "unknown window 'hann' (windows: hamming, bartlett, none)");
}

TEST(reflect_pad_is_numpy_reflect_for_any_pad) {
    const float row[3] = {0, 1, 2};
    const auto padded = reflect_pad(row, 1, 1, 3, 0, 0, 0, 7);  // one pixel high: numpy uses "edge"
    CHECK(padded[3] == 2.0f && padded[9] == 2.0f);
    std::vector<float> img(2 * 3);
    for (int i = 0; i < 6; ++i) img[std::size_t(i)] = float(i);
    const auto p = reflect_pad(img.data(), 1, 2, 3, 0, 3, 0, 5);  // np.pad(a, ((0,3),(0,5)), "reflect")
    const std::vector<float> row0 = {0, 1, 2, 1, 0, 1, 2, 1};
    for (int x = 0; x < 8; ++x) CHECK_EQ(p[std::size_t(x)], row0[std::size_t(x)]);
    // rows: 0, 1, 0, 1, 0
    CHECK_EQ(p[2 * 8 + 1], 1.0f);
    CHECK_EQ(p[3 * 8 + 1], 4.0f);
}

TEST(bicubic_keeps_constants_and_matches_pil_shape_rules) {
    std::vector<float> flat(5 * 7, 0.25f), out(10 * 14);
    bicubic_plane(flat.data(), 5, 7, out.data(), 10, 14);
    for (float v : out) CHECK(std::fabs(v - 0.25f) < 1e-6f);
    // Same size: a copy.
    std::vector<float> ramp(4 * 4), same(16);
    for (int i = 0; i < 16; ++i) ramp[std::size_t(i)] = float(i);
    bicubic_plane(ramp.data(), 4, 4, same.data(), 4, 4);
    CHECK(ramp == same);
}

TEST(crop_plan_owns_every_pixel_once_a_halo_inside) {
    // tiler.py plan_crop: tiles overlap by 2 * halo, the owned rectangles partition the padded
    // image and lie >= halo from every tile edge that is not an image edge.
    ShapeRules rules;
    rules.halo = 5;
    const int cases[4][3] = {{100, 37, 20}, {11, 64, 11}, {57, 57, 12}, {30, 200, 31}};
    for (const auto& c : cases) {
        const TilePlan plan = plan_crop(c[0], c[1], c[2], c[2], rules);
        const int ph = c[0] + plan.extra_h, pw = c[1] + plan.extra_w;
        std::vector<int> count(std::size_t(ph) * pw, 0);
        for (std::size_t i = 0; i < plan.tiles.size(); ++i) {
            const auto [top, left] = plan.tiles[i];
            const Rect& r = plan.owned[i];
            for (int y = r.top; y < r.bottom; ++y)
                for (int x = r.left; x < r.right; ++x) ++count[std::size_t(y) * pw + x];
            CHECK(top == 0 || r.top - top >= 5);
            CHECK(left == 0 || r.left - left >= 5);
            CHECK(top + plan.patch_h == ph || top + plan.patch_h - r.bottom >= 5);
            CHECK(left + plan.patch_w == pw || left + plan.patch_w - r.right >= 5);
        }
        for (int n : count) CHECK_EQ(n, 1);
    }
    CHECK((axis_cuts({0, 12, 24}, 16, 40) == std::vector<int>{0, 14, 26, 40}));
    CHECK_THROWS(plan_crop(30, 30, 10, 10, rules), Status::Shape,
                 "patch 10 is too small for crop stitching: it must exceed twice the halo (10); use a larger patch "
                 "or stitch blend");
}

TEST(split_padding_puts_ceil_half_before) {
    CHECK_EQ(split_pad(5, "split"), 3);
    CHECK_EQ(split_pad(4, "split"), 2);
    CHECK_EQ(split_pad(5, "end"), 0);
    ShapeRules rules;
    rules.multiple_of = 8, rules.min_size = 8, rules.halo = 2, rules.pad_align = "split";
    const TilePlan plan = plan_crop(19, 13, 64, 64, rules);  // legal 24 x 16
    CHECK(plan.extra_h == 5 && plan.before_h == 3 && plan.extra_w == 3 && plan.before_w == 2);
    std::vector<float> img(2 * 3);
    for (int i = 0; i < 6; ++i) img[std::size_t(i)] = float(i);
    const auto q = reflect_pad(img.data(), 1, 2, 3, 1, 0, 3, 2);  // np.pad(a, ((1, 0), (3, 2)), "reflect")
    const std::vector<float> top_row = {4, 5, 4, 3, 4, 5, 4, 3};  // row 1 reflected above, then columns
    for (int x = 0; x < 8; ++x) CHECK_EQ(q[std::size_t(x)], top_row[std::size_t(x)]);
}

TEST(budget_patch_follows_the_budget) {
    // budget.py budget_patch: the whole image when it fits; else the legal patch computing the
    // fewest pixels among those that fit (tight patches per tile count).
    ShapeRules rules;
    rules.output_scale = 2, rules.halo = 4;
    MemoryModel model;
    model.per_pixel = 100.0, model.fixed = 1000.0;
    std::pair<int, int> patch;
    const double own = image_bytes(100, 100, 2, false);
    const auto budget = [&](double area) { return std::int64_t(own + model.fixed + 2.5 * 100.0 * area); };
    CHECK(!budget_patch(model, budget(100 * 100), rules, 100, 100, 1, false, 9, 8, patch));
    CHECK(budget_patch(model, budget(100 * 100) - 1, rules, 100, 100, 1, false, 9, 8, patch));
    // 2 tiles per axis with overlap 8 need 54 each (2 * 54 - 8 = 100): 54 x 54 = 2916 px fit 3000.
    CHECK(budget_patch(model, budget(3000), rules, 100, 100, 1, false, 9, 8, patch));
    CHECK_EQ(patch.first, 54);
    CHECK_EQ(patch.second, 54);
    // nothing fits: the floor
    CHECK(budget_patch(model, 0, rules, 100, 100, 1, false, 9, 8, patch));
    CHECK(patch.first == 9 && patch.second == 9);
}

TEST(budget_patch_on_the_cpu_takes_the_least_time_within_the_recompute_bound) {
    // budget.py cpu_cost: FLOPs computed + touch_flops_per_byte x the bytes the calls hold,
    // among tilings computing at most `recompute` x the image. Here 100x100, overlap 8, at
    // most 9999 patch pixels: 1x2 tiles of 100x54 compute 10800 px (1.08x), 2x2 of 54 11664
    // (1.17x), 2x3 of 54x39 12636 (1.26x), 1x4 of 100x31 12400 (1.24x), 3x3 of 39 13689 (1.37x).
    ShapeRules rules;
    rules.output_scale = 2, rules.halo = 4;
    MemoryModel model;
    model.per_pixel = 100.0, model.fixed = 0.0, model.flops_per_pixel = 1.0;
    const double own = image_bytes(100, 100, 2, false);
    const std::int64_t budget = std::int64_t(own + 2.5 * 100.0 * 9999);
    std::pair<int, int> patch;
    model.touch_flops_per_byte = 0.0;  // touching is free: the fewest pixels
    CHECK(budget_patch(model, budget, rules, 100, 100, 1, false, 9, 8, patch, 0, 1.3));
    CHECK(patch.first == 100 && patch.second == 54);
    // 250 FLOPs per patch pixel held: 54x39 (12636 + 526500) beats 100x31 (12400 + 775000),
    // 54x54 (11664 + 729000) and 100x54 (10800 + 1350000); 39x39 is outside the bound
    model.touch_flops_per_byte = 1.0;
    CHECK(budget_patch(model, budget, rules, 100, 100, 1, false, 9, 8, patch, 0, 1.3));
    CHECK(patch.first == 54 && patch.second == 39);
    CHECK(budget_patch(model, budget, rules, 100, 100, 1, false, 9, 8, patch));  // no bound: the fewest pixels
    CHECK(patch.first == 100 && patch.second == 54);
}

TEST(cpu_blender_of_constant_patches_is_constant) {
    const auto wy = window_1d("hamming", 8), wx = window_1d("hamming", 8);
    CpuBlender blender(3, 14, 14, wy, wx);
    std::vector<float> patches(2 * 3 * 64, 0.5f);
    blender.add(patches.data(), 2, {{0, 0}, {6, 6}});
    blender.add(patches.data(), 2, {{0, 6}, {6, 0}});
    const auto out = blender.result(0, 0, 13, 14);
    float err = 0.0f;
    for (float v : out) err = std::max(err, std::fabs(v - 0.5f));
    CHECK(err < 1e-6f);
}

TEST(onnx_pinning_rewrites_only_the_named_input_dims) {
    const std::string model = tiny::pixel_model(true);
    const std::string pinned = pin_onnx_input_shapes(model, {{"image", {2, 3, 16, 20}}, {"noise0", {2, 1, 32, 40}}});
    std::string expected_image = tiny::value_info("image", {2, 3, 16, 20});
    CHECK(pinned.find(expected_image) != std::string::npos);
    CHECK(pinned.find(tiny::value_info("noise0", {2, 1, 32, 40})) != std::string::npos);
    CHECK(pinned.find(tiny::value_info("output", {0, 3, 0, 0})) != std::string::npos);  // outputs untouched
    CHECK(pinned.size() < model.size());  // symbolic names are longer than these varints
    CHECK_THROWS(pin_onnx_input_shapes(model, {{"missing", {1}}}), Status::Bundle, "lacks some of the inputs");
    CHECK_THROWS(pin_onnx_input_shapes(model.substr(0, 40), {{"image", {1, 3, 4, 4}}}), Status::Bundle, "truncated");
}

TEST(manifest_errors_are_the_python_messages) {
    CHECK_THROWS(parse_manifest("{", "m.json"), Status::Bundle, "m.json is corrupt");
    CHECK_THROWS(parse_manifest("{}", "m.json"), Status::Bundle, "manifest.json has no format_version");
    CHECK_THROWS(parse_manifest(R"({"format_version": 2})", "m.json"), Status::Bundle,
                 "bundle format 2 is newer than this sr-export understands (1); upgrade sr-export");
    CHECK_THROWS(parse_manifest(R"({"format_version": 1, "model": "x"})", "m.json"), Status::Bundle,
                 "m.json is corrupt: missing key 'variant'");
}

TEST(bundles_are_refused_when_missing_tampered_or_incomplete) {
    const fs::path root = fs::temp_directory_path() / ("srx-core-" + std::to_string(::getpid()));
    fs::remove_all(root);
    CHECK_THROWS(read_manifest((root / "nope").string()), Status::Bundle, "bundle not found");
    fs::create_directories(root / "empty");
    CHECK_THROWS(read_manifest((root / "empty").string()), Status::Bundle, "is not a bundle: no manifest.json");
    const std::string dir = tiny::write_bundle(root / "b", false);
    CHECK_EQ(read_manifest(dir).model, std::string("tiny"));
    {
        std::ofstream(fs::path(dir) / "model.fp32.onnx", std::ios::app) << "x";
    }
    CHECK_THROWS(read_manifest(dir), Status::Bundle, "is damaged: model.fp32.onnx does not match its SHA-256");
    CHECK_EQ(read_manifest(dir, false).model, std::string("tiny"));  // verify_hashes = false
    fs::remove(fs::path(dir) / "model.fp32.onnx");
    CHECK_THROWS(read_manifest(dir), Status::Bundle, "is incomplete: model.fp32.onnx is missing");
    fs::remove_all(root);
}

// ---- precision auto (precision_auto.py): the same rule, gates and reasons ------------
namespace {
PrecisionRecord record(std::optional<double> psnr, std::optional<double> loss = std::nullopt, bool met = false,
                       bool trunk = false) {
    PrecisionRecord r;
    r.psnr_vs_fp32_db = psnr, r.psnr_y_loss_vs_fp32_db = loss, r.selection_met = met, r.float_in_trunk = trunk;
    return r;
}
// tests/test_precision_auto.py's records: FP32, FP16 (74.5 dB), INT8 (met, 0.087 dB), BF16 (0.0035 dB).
const PrecisionRecord FP32 = record(std::nullopt), FP16 = record(74.5), INT8 = record(38.0, 0.087, true),
                      BF16 = record(53.1, 0.0035), MIXED = record(38.0, 0.087, true, true);
PrecisionMachine machine(const std::string& backend, bool gpu, bool openvino, std::set<std::string> caps,
                         std::set<std::string> flags) {
    PrecisionMachine m;
    m.backend = backend, m.gpu = gpu, m.openvino = openvino, m.cpu_caps = caps, m.cpu_flags = flags;
    return m;
}
const PrecisionMachine AMX = machine("auto", false, true, {"FP32", "INT8", "BF16"}, {"avx2", "amx_bf16", "amx_int8"});
const PrecisionMachine VNNI = machine("auto", false, true, {"FP32", "INT8"}, {"avx2", "avx_vnni"});
const PrecisionMachine AVX2 = machine("auto", false, true, {"FP32", "INT8"}, {"avx2", "fma"});
const PrecisionMachine GPU = machine("auto", true, false, {}, {"avx2"});
std::string chosen(std::map<std::string, PrecisionRecord> recorded, const PrecisionMachine& m) {
    return choose_precision(recorded, m).precision;
}
}  // namespace

TEST(precision_auto_orders_precisions_by_machine_as_python) {
    const std::map<std::string, PrecisionRecord> all{{"fp32", FP32}, {"fp16", FP16}, {"bf16", BF16}, {"int8", INT8}};
    CHECK_EQ(chosen(all, AMX), std::string("int8"));
    CHECK_EQ(chosen({{"fp32", FP32}, {"bf16", BF16}}, AMX), std::string("bf16"));
    CHECK_EQ(chosen({{"fp32", FP32}, {"fp16", FP16}}, AMX), std::string("fp32"));
    CHECK_EQ(chosen(all, VNNI), std::string("int8"));
    CHECK_EQ(chosen({{"fp32", FP32}, {"bf16", BF16}}, VNNI), std::string("fp32"));
    CHECK_EQ(chosen(all, AVX2), std::string("fp32"));
    CHECK_EQ(chosen(all, GPU), std::string("int8"));
    CHECK_EQ(chosen({{"fp32", FP32}, {"fp16", FP16}, {"bf16", BF16}}, GPU), std::string("fp16"));
    for (const char* backend : {"onnxruntime", "opencv"}) {
        PrecisionMachine m = AMX;
        m.backend = backend;
        CHECK_EQ(chosen(all, m), std::string("fp32"));
    }
    PrecisionMachine no_openvino = AMX;
    no_openvino.openvino = false;
    CHECK_EQ(chosen(all, no_openvino), std::string("fp32"));
    CHECK_EQ(choose_precision(all, AVX2).reason,
             std::string("precision auto: fp32 (this CPU runs int8 on AVX2 alone (no VNNI or BF16): faster than fp32 "
                         "for frames of one size, compiled static, not for images of many sizes; the reference)"));
    const PrecisionMachine no_int8 = machine("auto", false, true, {"FP32"}, {"avx2", "fma"});
    CHECK_EQ(choose_precision(all, no_int8).reason,
             std::string("precision auto: fp32 (this CPU has no BF16 or VNNI, where reduced precision pays on "
                         "OpenVINO; the reference)"));
    PrecisionMachine ort = AMX;
    ort.backend = "onnxruntime";
    CHECK_EQ(choose_precision(all, ort).reason,
             std::string("precision auto: fp32 (on the CPU through onnxruntime, reduced precision brings no speed; "
                         "the reference)"));
}

TEST(precision_auto_puts_a_mixed_int8_graph_after_bf16_on_a_bf16_cpu) {
    const std::map<std::string, PrecisionRecord> mixed{{"fp32", FP32}, {"bf16", BF16}, {"int8", MIXED}};
    const PrecisionChoice choice = choose_precision(mixed, AMX);
    CHECK_EQ(choice.precision, std::string("bf16"));
    CHECK_EQ(choice.reason,
             std::string("precision auto: bf16 (this CPU has BF16 (AVX512-BF16/AMX): OpenVINO runs int8, then bf16, "
                         "fastest; this bundle's int8 graph keeps layers in float, slower than bf16 here on images "
                         "of many sizes (frame streams run it); PSNR-Y loss 0.0035 dB (gate <= 0.05 dB))"));
    CHECK_EQ(chosen({{"fp32", FP32}, {"int8", MIXED}}, AMX), std::string("int8"));  // no bf16 recorded
    CHECK_EQ(chosen(mixed, VNNI), std::string("int8"));  // no bf16 on this CPU
    CHECK_EQ(chosen(mixed, GPU), std::string("int8"));
}

TEST(precision_auto_passes_over_a_precision_outside_its_gate_and_says_so) {
    const PrecisionRecord lossy_int8 = record(30.0, 0.5, true), unmet = record(38.0, 0.1, false);
    const PrecisionRecord lossy_bf16 = record(45.0, 0.2);
    const PrecisionChoice choice = choose_precision({{"fp32", FP32}, {"int8", lossy_int8}, {"bf16", BF16}}, AMX);
    CHECK_EQ(choice.precision, std::string("bf16"));
    CHECK_EQ(choice.reason,
             std::string("precision auto: bf16 (this CPU has BF16 (AVX512-BF16/AMX): OpenVINO runs int8, then bf16, "
                         "fastest; PSNR-Y loss 0.0035 dB (gate <= 0.05 dB); int8: outside its gate, PSNR-Y loss 0.5 "
                         "dB (gate <= 0.2 dB))"));
    CHECK_EQ(chosen({{"fp32", FP32}, {"int8", unmet}, {"bf16", lossy_bf16}}, AMX), std::string("fp32"));
    CHECK_EQ(choose_precision({{"fp32", FP32}, {"int8", unmet}, {"bf16", lossy_bf16}}, AMX).reason,
             std::string("precision auto: fp32 (this CPU has BF16 (AVX512-BF16/AMX): OpenVINO runs int8, then bf16, "
                         "fastest; the reference; int8: outside its gate, PSNR-Y loss 0.1 dB (gate <= 0.2 dB), "
                         "bf16: outside its gate, PSNR-Y loss 0.2 dB (gate <= 0.05 dB))"));
    // Without ground truth the gates fall back to PSNR against fp32 (>= 50 dB); "None" when absent.
    CHECK_EQ(chosen({{"fp32", FP32}, {"bf16", record(60.0)}}, AMX), std::string("bf16"));
    CHECK_EQ(choose_precision({{"fp32", FP32}, {"fp16", record(std::nullopt)}}, GPU).reason,
             std::string("precision auto: fp32 (an NVIDIA GPU runs int8, then fp16, fastest; the reference; "
                         "int8: not in the bundle, fp16: outside its gate, PSNR vs fp32 None dB (gate >= 50))"));
    CHECK_EQ(choose_precision({{"fp32", FP32}, {"int8", record(38.0, std::nullopt, true)}}, VNNI).reason,
             std::string("precision auto: int8 (this CPU has VNNI: OpenVINO runs int8 fastest; the build's held-out "
                         "target (gate <= 0.2 dB))"));
}

TEST(precision_records_are_read_from_the_manifest) {
    const fs::path root = fs::temp_directory_path() / ("srx-records-" + std::to_string(::getpid()));
    fs::remove_all(root);
    const std::string dir = tiny::write_bundle(root / "b", false);
    std::string text;
    {
        std::ifstream in(fs::path(dir) / "manifest.json");
        text.assign(std::istreambuf_iterator<char>(in), {});
    }
    const std::string fp32 = R"("precisions": {"fp32": {"file": "model.fp32.onnx", "max_abs_error_vs_torch": null, )"
                             R"("psnr_vs_fp32_db": null, "psnr_y_db": null, "notes": {}}})";
    const auto at = text.find(fp32);
    CHECK(at != std::string::npos);
    text.replace(at, fp32.size(),
                 R"("precisions": {"fp32": {"file": "model.fp32.onnx", "notes": {}}, )"
                 R"("int8": {"file": "model.fp32.onnx", "psnr_vs_fp32_db": 38.5, "notes": {"selection": {"met": true},)"
                 R"( "psnr_y_loss_vs_fp32_db": 0.087, "excluded_nodes": ["/a/Conv"]}}, )"
                 R"("bf16": {"file": "model.fp32.onnx", "psnr_vs_fp32_db": 53.1, "notes": {"float_in_trunk": false,)"
                 R"( "excluded_nodes": ["/b"]}}})");
    const Manifest m = parse_manifest(text, "m.json");
    CHECK_EQ(m.precision_records.size(), std::size_t(3));
    const PrecisionRecord& int8 = m.precision_records.at("int8");
    CHECK(int8.selection_met && int8.float_in_trunk && int8.psnr_vs_fp32_db && *int8.psnr_vs_fp32_db == 38.5);
    CHECK(int8.psnr_y_loss_vs_fp32_db && *int8.psnr_y_loss_vs_fp32_db == 0.087);
    const PrecisionRecord& bf16 = m.precision_records.at("bf16");
    CHECK(!bf16.float_in_trunk && !bf16.selection_met && !bf16.psnr_y_loss_vs_fp32_db);  // float_in_trunk wins
    CHECK(!m.precision_records.at("fp32").psnr_vs_fp32_db);
    fs::remove_all(root);
}

TEST(cpu_flags_are_read_from_cpuinfo) {
    const fs::path path = fs::temp_directory_path() / ("srx-cpuinfo-" + std::to_string(::getpid()));
    std::ofstream(path) << "processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 amx_int8 avx512_vnni\n";
    CHECK(cpu_flags(path.string()) == (std::set<std::string>{"fpu", "avx2", "amx_int8", "avx512_vnni"}));
    fs::remove(path);
    CHECK(cpu_flags(path.string()).empty());
}

int main() { return check::run_all(); }
