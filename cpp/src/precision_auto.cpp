// Precision "auto" (the twin of srexport/runtime/backends/precision_auto.py): the fastest
// precision the bundle was built and verified with that this machine runs, within the
// accuracy gate the bundle recorded for it. Same order, gates and reasons as Python's rule
// for images (the C++ runtime upscales images; Python's frame streams are not here):
//   - an NVIDIA GPU (TensorRT, or ONNX Runtime with its CUDA provider): int8, fp16, fp32;
//   - OpenVINO on a CPU with BF16 (AVX512-BF16 / AMX): int8, bf16, fp32, a mixed int8 graph
//     (layers kept in float inside the network) after bf16;
//   - OpenVINO on a CPU with VNNI and no BF16: int8, fp32;
//   - OpenVINO on a CPU with INT8 kernels on AVX2 alone: fp32 (Python runs int8 there for frame
//     streams only, which this runtime does not take);
//   - anything else: fp32.
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "internal.hpp"

namespace srexport {
namespace detail {
namespace {

constexpr double FP16_MIN_PSNR_DB = 50.0, INT8_MAX_LOSS_DB = 0.2, BF16_MAX_LOSS_DB = 0.05, BF16_MIN_PSNR_DB = 50.0;

// A number as Python's str(float) writes it (shortest round trip, "60.0" not "60"); "None" when absent.
std::string py_number(const std::optional<double>& value) {
    if (!value) return "None";
    char text[64];
    const auto done = std::to_chars(text, text + sizeof text, *value);
    std::string out(text, done.ptr);
    if (out.find_first_of(".en") == std::string::npos) out += ".0";
    return out;
}

std::string join(const std::vector<std::string>& parts, const char* separator) {
    std::string out;
    for (const auto& part : parts) out += (out.empty() ? "" : separator) + part;
    return out;
}

struct Order {
    std::vector<std::string> precisions;
    std::string why;
};

Order machine_order(const PrecisionMachine& machine) {
    const auto& b = machine.backend;
    if ((b == "auto" || b == "tensorrt" || b == "onnxruntime") && machine.gpu)
        return {{"int8", "fp16", "fp32"}, "an NVIDIA GPU runs int8, then fp16, fastest"};
    if ((b == "auto" || b == "openvino") && machine.openvino) {
        if (machine.cpu_caps.count("BF16"))
            return {{"int8", "bf16", "fp32"},
                    "this CPU has BF16 (AVX512-BF16/AMX): OpenVINO runs int8, then bf16, fastest"};
        for (const char* flag : {"avx512_vnni", "avx_vnni", "amx_int8"})
            if (machine.cpu_flags.count(flag)) return {{"int8", "fp32"}, "this CPU has VNNI: OpenVINO runs int8 fastest"};
        if (machine.cpu_caps.count("INT8"))
            return {{"fp32"},
                    "this CPU runs int8 on AVX2 alone (no VNNI or BF16): faster than fp32 for frames of one size, "
                    "compiled static, not for images of many sizes"};
        return {{"fp32"}, "this CPU has no BF16 or VNNI, where reduced precision pays on OpenVINO"};
    }
    const std::string where = b == "auto" ? "ONNX Runtime" : b;
    return {{"fp32"}, "on the CPU through " + where + ", reduced precision brings no speed"};
}

bool passes_gate(const std::string& precision, const PrecisionRecord& info, std::string& figure) {
    const auto& loss = info.psnr_y_loss_vs_fp32_db;
    const auto& psnr = info.psnr_vs_fp32_db;
    if (precision == "fp32") {
        figure = "the reference";
        return true;
    }
    if (precision == "fp16") {
        figure = "PSNR vs fp32 " + py_number(psnr) + " dB (gate >= 50)";
        return psnr && *psnr >= FP16_MIN_PSNR_DB;
    }
    if (precision == "int8") {
        figure = (loss ? "PSNR-Y loss " + py_number(loss) + " dB" : std::string("the build's held-out target")) +
                 " (gate <= 0.2 dB)";
        return info.selection_met && (!loss || *loss <= INT8_MAX_LOSS_DB);
    }
    if (precision == "bf16") {
        if (loss) {
            figure = "PSNR-Y loss " + py_number(loss) + " dB (gate <= 0.05 dB)";
            return *loss <= BF16_MAX_LOSS_DB;
        }
        figure = "PSNR vs fp32 " + py_number(psnr) + " dB (gate >= 50)";
        return psnr && *psnr >= BF16_MIN_PSNR_DB;
    }
    figure = "unknown precision " + precision;
    return false;
}

}  // namespace

PrecisionChoice choose_precision(const std::map<std::string, PrecisionRecord>& recorded,
                                 const PrecisionMachine& machine) {
    Order order = machine_order(machine);
    auto& p = order.precisions;
    const auto int8 = recorded.find("int8");
    if (std::count(p.begin(), p.end(), "bf16") && std::count(p.begin(), p.end(), "int8") && recorded.count("bf16") &&
        int8 != recorded.end() && int8->second.float_in_trunk) {
        p.erase(std::find(p.begin(), p.end(), "int8"));
        p.insert(std::find(p.begin(), p.end(), "bf16") + 1, "int8");
        order.why += "; this bundle's int8 graph keeps layers in float, slower than bf16 here on images of many "
                     "sizes (frame streams run it)";
    }
    std::vector<std::string> passed;
    for (const auto& precision : p) {
        const auto found = recorded.find(precision);
        if (found == recorded.end()) {
            passed.push_back(precision + ": not in the bundle");
            continue;
        }
        std::string figure;
        if (passes_gate(precision, found->second, figure)) {
            const std::string skipped = passed.empty() ? "" : "; " + join(passed, ", ");
            return {precision, "precision auto: " + precision + " (" + order.why + "; " + figure + skipped + ")"};
        }
        passed.push_back(precision + ": outside its gate, " + figure);
    }
    return {"fp32", "precision auto: fp32 (" + join(passed, "; ") + ")"};
}

std::set<std::string> cpu_flags(const std::string& cpuinfo) {
    std::ifstream in(cpuinfo);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("flags", 0) != 0) continue;
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::istringstream words(line.substr(colon + 1));
        std::set<std::string> flags;
        for (std::string w; words >> w;) flags.insert(w);
        return flags;
    }
    return {};
}

bool nvidia_gpu_present() {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    if (visible) {
        std::string v(visible);
        v.erase(0, v.find_first_not_of(" \t"));
        v.erase(v.find_last_not_of(" \t") + 1);
        if (v.empty() || v == "-1") return false;
    }
    std::error_code ec;
    const std::filesystem::path gpus("/proc/driver/nvidia/gpus");
    if (std::filesystem::is_directory(gpus, ec) && std::filesystem::directory_iterator(gpus, ec) !=
                                                       std::filesystem::directory_iterator())
        return true;
    for (int i = 0; i < 16; ++i)
        if (std::filesystem::exists("/dev/nvidia" + std::to_string(i), ec)) return true;
    return false;
}

PrecisionMachine this_machine(const std::string& backend) {
    PrecisionMachine m;
    m.backend = backend;
    bool gpu_runtime = false;
#ifdef SRX_HAVE_TENSORRT
    gpu_runtime = true;
#endif
    gpu_runtime = gpu_runtime || onnxruntime_has_cuda();
    m.gpu = gpu_runtime && nvidia_gpu_present();
    if (openvino_compiled() && (backend == "auto" || backend == "openvino") && !(m.gpu && backend == "auto"))
        m.cpu_caps = openvino_cpu_capabilities();
    m.openvino = openvino_compiled() && (!m.cpu_caps.empty() || m.gpu);
    m.cpu_flags = cpu_flags();
    return m;
}

}  // namespace detail
}  // namespace srexport
