// Unit tests of libsrexport's pieces against the Python runtime's definitions (each
// expected value below was produced by, or is stated in, srexport/runtime/*.py).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
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

TEST(largest_patch_follows_the_budget) {
    // budget.py largest_patch: the whole image when it fits; else the legal patch computing the
    // fewest pixels among those that fit (tight patches per tile count).
    ShapeRules rules;
    rules.output_scale = 2, rules.halo = 4;
    MemoryModel model;
    model.per_pixel = 100.0, model.fixed = 1000.0;
    std::pair<int, int> patch;
    const double own = image_bytes(100, 100, 2, false);
    const auto budget = [&](double area) { return std::int64_t(own + model.fixed + 2.5 * 100.0 * area); };
    CHECK(!largest_patch(model, budget(100 * 100), rules, 100, 100, 1, false, 9, 8, patch));
    CHECK(largest_patch(model, budget(100 * 100) - 1, rules, 100, 100, 1, false, 9, 8, patch));
    // 2 tiles per axis with overlap 8 need 54 each (2 * 54 - 8 = 100): 54 x 54 = 2916 px fit 3000.
    CHECK(largest_patch(model, budget(3000), rules, 100, 100, 1, false, 9, 8, patch));
    CHECK_EQ(patch.first, 54);
    CHECK_EQ(patch.second, 54);
    // nothing fits: the floor
    CHECK(largest_patch(model, 0, rules, 100, 100, 1, false, 9, 8, patch));
    CHECK(patch.first == 9 && patch.second == 9);
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

int main() { return check::run_all(); }
