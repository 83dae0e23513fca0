#include <srexport/srexport.hpp>
#include <cstdio>
#include <vector>
int main(int argc, char** argv) try {
    srexport::Upscaler up(argc > 1 ? argv[1] : "bundles/pcarn-m-x4");  // backend and precision "auto"
    const int w = 64, h = 48;
    std::vector<unsigned char> in(w * h * 3, 128), out;                 // HWC RGB, 8 bit
    auto [ow, oh] = up.output_size(w, h);
    out.resize(std::size_t(ow) * oh * 3);
    up.upscale({in.data(), w, h, 3}, {out.data(), ow, oh, 3});
    std::printf("%s on %s: %dx%d -> %dx%d\n", up.info().manifest.model.c_str(), up.info().backend.c_str(), w, h, ow, oh);
} catch (const srexport::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
}
