// The patch a memory budget allows: the twin of srexport/runtime/budget.py (default_budget,
// image_bytes, budget_patch, cpu_cost, _tight_patches, BACKEND_FACTORS, TOUCH_FLOPS_PER_BYTE) and
// validation.available_memory.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <tuple>
#include <unistd.h>

#include "internal.hpp"

namespace srexport {
namespace detail {

std::int64_t available_memory() {
    std::ifstream meminfo("/proc/meminfo");
    std::string line;
    while (std::getline(meminfo, line))
        if (line.rfind("MemAvailable:", 0) == 0) {
            std::istringstream fields(line.substr(13));
            long long kib = 0;
            if (fields >> kib) return std::int64_t(kib) * 1024;
        }
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) return std::int64_t(pages) * page;
    return std::int64_t(1) << 62;
}

double backend_factor(const std::string& backend) {
    return backend == "openvino" ? OPENVINO_FACTOR : BACKEND_FACTOR;
}

double touch_flops_per_byte(const std::string& backend) {
    return backend == "openvino" ? OPENVINO_TOUCH_FLOPS_PER_BYTE : TOUCH_FLOPS_PER_BYTE_DEFAULT;
}

Budget default_budget(double memory_gib) {
    if (memory_gib != 0.0 && !(memory_gib >= MIN_MEMORY_GIB && memory_gib <= MAX_MEMORY_GIB)) {
        // validation.check_load's rule and words
        char message[128];
        std::snprintf(message, sizeof message, "memory must be between %g and %g, got %g", MIN_MEMORY_GIB,
                      MAX_MEMORY_GIB, memory_gib);
        fail(Status::Argument, message);
    }
    if (memory_gib > 0) return {std::int64_t(memory_gib * double(std::int64_t(1) << 30)), "memory option"};
    return {std::int64_t(RAM_FRACTION * double(available_memory())), "50% of available RAM"};
}

double image_bytes(int height, int width, int output_scale, bool blend) {
    // The input planes and their padded copy, the float32 output canvas (and weight plane
    // when blending), the finished output (float32 HWC + quantised).
    const double out_px = double(output_scale) * output_scale * height * width;
    return 2 * 12.0 * height * width + out_px * (12.0 + 12.0 + 3.0 + (blend ? 4.0 : 0.0));
}

namespace {
// Per tile count n along an axis, the smallest legal patch covering it with n tiles
// (n * p - (n - 1) * overlap >= length): the only patch sizes worth considering.
std::vector<int> tight_patches(int length, int overlap, const ShapeRules& rules, int floor) {
    std::vector<int> sizes;
    for (long long n = 1;; ++n) {
        const long long need = length + (n - 1) * overlap;
        const int p = std::max(floor, rules.legal_at_least(int((need + n - 1) / n)));
        if (sizes.empty() || p < sizes.back()) sizes.push_back(p);
        if (p == floor || p <= overlap + rules.multiple_of) break;
    }
    return sizes;
}
}  // namespace

bool budget_patch(const MemoryModel& model, std::int64_t budget, const ShapeRules& rules, int height, int width,
                  int batch, bool blend, int floor, int overlap, std::pair<int, int>& patch, int cap,
                  double recompute) {
    const double left = double(budget) - image_bytes(height, width, rules.output_scale, blend);
    const int whole_h = rules.legal_at_least(height), whole_w = rules.legal_at_least(width);
    const bool whole_allowed = cap == 0 || (whole_h <= cap && whole_w <= cap);
    if (whole_allowed && model.patch_bytes(whole_h, whole_w, batch) <= left) return false;
    const double area = std::max(0.0, (left - model.fixed) / (model.factor * model.per_pixel * batch));
    floor = rules.legal_at_least(std::max(floor, rules.min_size));
    bool found = false;
    // (outside the recompute bound, estimated FLOPs or pixels computed, -area): smallest wins
    std::tuple<int, double, long long> best_cost;
    for (int ph : tight_patches(height, overlap, rules, floor))
        for (int pw : tight_patches(width, overlap, rules, floor)) {
            if (double(ph) * pw > area || (cap && (ph > cap || pw > cap))) continue;
            const long long rows = (long long)axis_starts(std::max(height, ph), ph, std::min(overlap, ph - 1)).size();
            const long long cols = (long long)axis_starts(std::max(width, pw), pw, std::min(overlap, pw - 1)).size();
            const long long computed = rows * ph * cols * pw;
            const bool within = recompute > 0 && double(computed) <= recompute * height * width;
            const double estimate = double(computed) * model.flops_per_pixel +
                                    model.touch_flops_per_byte * model.patch_bytes(ph, pw, batch);
            const std::tuple<int, double, long long> cost{within ? 0 : 1, within ? estimate : double(computed),
                                                          -(long long)ph * pw};
            if (!found || cost < best_cost) patch = {ph, pw}, best_cost = cost, found = true;
        }
    if (!found) patch = {floor, floor};
    return true;
}

}  // namespace detail
}  // namespace srexport
