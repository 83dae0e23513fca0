// Bundle loading: the twin of srexport/bundle.py (Manifest.from_json, load_bundle).
// Refuses a missing, truncated, tampered or too new bundle with the Python messages.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "internal.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace srexport {

bool ShapeRules::is_legal(int size) const {
    if (size < min_size) return false;
    int rem = (size - offset) % multiple_of;
    return rem == 0;
}

int ShapeRules::legal_at_least(int size) const {
    size = std::max(size, min_size);
    int rem = (size - offset) % multiple_of;
    if (rem < 0) rem += multiple_of;  // Python's % is non-negative for a positive divisor
    return rem == 0 ? size : size + multiple_of - rem;
}

namespace detail {

namespace {

const char* const MANIFEST = "manifest.json";

// A bundle-relative file name must stay inside the bundle.
bool safe_relative(const std::string& name) {
    if (name.empty()) return false;
    fs::path p(name);
    if (p.is_absolute() || p.has_root_name() || p.has_root_directory()) return false;
    for (const auto& part : p)
        if (part == "..") return false;
    return true;
}

template <typename T>
T get(const json& object, const char* key) {
    if (!object.is_object()) throw std::runtime_error("expected an object holding '" + std::string(key) + "'");
    auto it = object.find(key);
    if (it == object.end()) throw std::runtime_error("missing key '" + std::string(key) + "'");
    return it->get<T>();
}

// Python's bool() of a JSON value: false for null, false, 0, "", [] and {}.
bool truthy(const json& value) {
    if (value.is_null()) return false;
    if (value.is_boolean()) return value.get<bool>();
    if (value.is_number()) return value.get<double>() != 0.0;
    if (value.is_string()) return !value.get<std::string>().empty();
    return !value.empty();
}

int get_int(const json& object, const char* key) {
    const json& v = object.at(key);
    if (!v.is_number_integer()) throw std::runtime_error("'" + std::string(key) + "' must be an integer");
    return v.get<int>();
}

}  // namespace

Manifest parse_manifest(const std::string& text, const std::string& manifest_path) {
    json data;
    try {
        data = json::parse(text);
    } catch (const json::exception& exc) {
        fail(Status::Bundle, manifest_path + " is corrupt: " + exc.what());
    }
    if (!data.is_object() || !data.contains("format_version") || !data["format_version"].is_number_integer())
        fail(Status::Bundle, "manifest.json has no format_version");
    const int version = data["format_version"].get<int>();
    if (version > SRX_BUNDLE_FORMAT_VERSION)
        fail(Status::Bundle, "bundle format " + std::to_string(version) +
                                 " is newer than this sr-export understands (" +
                                 std::to_string(SRX_BUNDLE_FORMAT_VERSION) + "); upgrade sr-export");
    Manifest m;
    try {
        m.format_version = version;
        m.model = get<std::string>(data, "model");
        m.variant = get<std::string>(data, "variant");
        m.scale = get_int(data, "scale");
        m.task = get<std::string>(data, "task");
        m.input_kind = get<std::string>(data, "input_kind");
        m.params = data.at("params").get<long long>();
        m.inputs = get<std::vector<std::string>>(data, "inputs");
        m.outputs = get<std::vector<std::string>>(data, "outputs");
        for (const json& n : data.at("noise_inputs")) {
            NoiseInput ni;
            ni.name = get<std::string>(n, "name");
            ni.channels = get_int(n, "channels");
            ni.factor = get_int(n, "factor");
            ni.border = get_int(n, "border");
            if (n.contains("kind")) ni.kind = get<std::string>(n, "kind");
            if (ni.kind != "normal" && ni.kind != "amplitude")
                fail(Status::Bundle, manifest_path + " is corrupt: noise input " + ni.name + " has an unknown kind");
            m.noise_inputs.push_back(ni);
        }
        const json& r = data.at("shape_rules");
        m.shape_rules.multiple_of = get_int(r, "multiple_of");
        m.shape_rules.offset = get_int(r, "offset");
        m.shape_rules.min_size = get_int(r, "min_size");
        m.shape_rules.output_scale = get_int(r, "output_scale");
        if (r.contains("halo") && !r["halo"].is_null()) m.shape_rules.halo = get_int(r, "halo");
        // Stitching uses the halo the build measured where it recorded one (as Python's
        // Manifest.stitching_rules): tiles overlap by twice it, far less than the geometric one.
        if (data.contains("stitch_halo") && !data["stitch_halo"].is_null()) {
            const int measured = get_int(data.at("stitch_halo"), "pixels");
            if (!m.shape_rules.halo || measured < 0 || measured > *m.shape_rules.halo)
                throw std::runtime_error("stitch_halo.pixels must lie between 0 and shape_rules.halo");
            m.shape_rules.halo = measured;
        }
        if (r.contains("pad_rule")) m.shape_rules.pad_rule = get<std::string>(r, "pad_rule");
        if (r.contains("pad_align")) m.shape_rules.pad_align = get<std::string>(r, "pad_align");
        if (m.shape_rules.pad_align != "end" && m.shape_rules.pad_align != "split")
            throw std::runtime_error("shape_rules.pad_align must be 'end' or 'split'");
        m.patch = get_int(data, "patch");
        m.overlap = get_int(data, "overlap");
        for (const auto& item : data.at("precisions").items()) {
            const json& p = item.value();
            PrecisionRecord record;
            record.file = m.precisions[item.key()] = get<std::string>(p, "file");
            if (p.contains("psnr_vs_fp32_db") && p["psnr_vs_fp32_db"].is_number())
                record.psnr_vs_fp32_db = p["psnr_vs_fp32_db"].get<double>();
            const json notes = p.contains("notes") && p["notes"].is_object() ? p["notes"] : json::object();
            if (notes.contains("psnr_y_loss_vs_fp32_db") && notes["psnr_y_loss_vs_fp32_db"].is_number())
                record.psnr_y_loss_vs_fp32_db = notes["psnr_y_loss_vs_fp32_db"].get<double>();
            if (notes.contains("selection") && notes["selection"].is_object() && notes["selection"].contains("met"))
                record.selection_met = truthy(notes["selection"]["met"]);
            // precision_auto.mixed_int8: float_in_trunk where recorded, else any excluded node
            record.float_in_trunk = notes.contains("float_in_trunk") ? truthy(notes["float_in_trunk"])
                                                                     : truthy(notes.value("excluded_nodes", json()));
            m.precision_records[item.key()] = record;
        }
        if (data.contains("files"))
            for (const auto& item : data.at("files").items()) m.files[item.key()] = item.value().get<std::string>();
        if (data.contains("channel_order")) m.channel_order = get<std::string>(data, "channel_order");
        if (data.contains("value_range")) {
            auto vr = data.at("value_range").get<std::vector<double>>();
            if (vr.size() != 2) throw std::runtime_error("value_range must hold two numbers");
            m.value_range[0] = vr[0], m.value_range[1] = vr[1];
        }
    } catch (const Error&) {
        throw;
    } catch (const std::exception& exc) {
        fail(Status::Bundle, manifest_path + " is corrupt: " + exc.what());
    }
    if (m.shape_rules.multiple_of < 1 || m.shape_rules.output_scale < 1 || m.scale < 1 || m.patch < 1)
        fail(Status::Bundle, manifest_path + " is corrupt: non-positive sizes in shape_rules, scale or patch");
    for (const auto& ni : m.noise_inputs)
        if (ni.channels < 1 || ni.factor < 1 || ni.border < 0)
            fail(Status::Bundle, manifest_path + " is corrupt: noise input " + ni.name + " has an invalid shape");
    return m;
}

std::string graph_path(const std::string& root, const Manifest& manifest, const std::string& precision) {
    auto it = manifest.precisions.find(precision);
    if (it == manifest.precisions.end()) {
        std::string have;
        for (const auto& p : manifest.precisions) have += (have.empty() ? "" : ", ") + p.first;
        fail(Status::Bundle, "bundle " + root + " has no " + precision + " graph (it has: " + have + ")");
    }
    return (fs::path(root) / it->second).string();
}

}  // namespace detail

Manifest read_manifest(const std::string& bundle_dir, bool verify_hashes) {
    using detail::fail;
    const fs::path root(bundle_dir);
    std::error_code ec;
    if (!fs::is_directory(root, ec)) fail(Status::Bundle, "bundle not found: " + bundle_dir + " is not a directory");
    const fs::path manifest_path = root / detail::MANIFEST;
    if (!fs::is_regular_file(manifest_path, ec))
        fail(Status::Bundle, bundle_dir + " is not a bundle: no " + std::string(detail::MANIFEST));
    std::ifstream in(manifest_path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) fail(Status::Bundle, "cannot read " + manifest_path.string());
    Manifest manifest = detail::parse_manifest(text.str(), manifest_path.string());
    for (const auto& item : manifest.files)
        if (!detail::safe_relative(item.first))
            fail(Status::Bundle, "bundle " + bundle_dir + " is damaged: file name '" + item.first +
                                     "' points outside the bundle");
    if (verify_hashes) {
        for (const auto& item : manifest.files) {
            const fs::path file = root / item.first;
            if (!fs::is_regular_file(file, ec))
                fail(Status::Bundle, "bundle " + bundle_dir + " is incomplete: " + item.first + " is missing");
            if (detail::sha256_file(file.string()) != item.second)
                fail(Status::Bundle,
                     "bundle " + bundle_dir + " is damaged: " + item.first + " does not match its SHA-256");
        }
    }
    for (const auto& p : manifest.precisions)
        if (!manifest.files.count(p.second))
            fail(Status::Bundle, "bundle " + bundle_dir + " lists " + p.second + " but does not hash it");
    return manifest;
}

}  // namespace srexport
