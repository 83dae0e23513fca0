#!/usr/bin/env bash
# Build libsrexport (cpp/) and run its ctest tests: what CI calls for the C++ embedding.
#   - installs the Debian packages the build needs, only those missing (apt-get, quiet);
#   - configures and builds build/cpp (Release, -j2; nvcc compile-checks the GPU blender
#     where it exists; TensorRT / ONNX Runtime backends where their headers exist; the
#     OpenVINO backend from the openvino wheel of `python` on PATH, when it has one);
#   - runs ctest (unit tests, tiny bundles end to end, the C ABI from C, the example
#     program, and a consumer built against the installed CMake package).
# The pytest half (tests/test_cpp_abi.py, parity with the Python runtime through ctypes)
# runs with the rest of pytest and reuses build/cpp; when the openvino wheel arrives only
# with the test extra (after this script), it configures build/cpp again with it and
# tests/test_cpp_openvino.py checks the OpenVINO backend against the Python runtime.
# Fails on any build or test failure.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${SREXPORT_CPP_BUILD_DIR:-build/cpp}"
start=$(date +%s)

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
[ -f /usr/include/nlohmann/json.hpp ] || need+=(nlohmann-json3-dev)
[ -f /usr/include/opencv4/opencv2/dnn.hpp ] || need+=(libopencv-dnn-dev)
[ -f /usr/include/png.h ] || need+=(libpng-dev)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "cpp: apt-get install ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "cpp: missing ${need[*]} and cannot apt-get install them here" >&2
        exit 1
    fi
else
    echo "cpp: build dependencies present (cmake, g++, nlohmann-json3-dev, libopencv-dnn-dev, libpng-dev)"
fi

python_bin="$(command -v python || command -v python3 || true)"
if [ -n "$python_bin" ] && "$python_bin" -c "import openvino" >/dev/null 2>&1; then
    echo "cpp: OpenVINO SDK from $("$python_bin" -c "import openvino; print('openvino', openvino.__version__.split('-')[0])") ($python_bin)"
else
    echo "cpp: no openvino wheel for ${python_bin:-python}: building without the OpenVINO backend"
fi

echo "cpp: configure $build (Release)"
mkdir -p "$(dirname "$build")"
cmake -S cpp -B "$build" -DCMAKE_BUILD_TYPE=Release ${python_bin:+"-DSREXPORT_PYTHON=$python_bin"} \
    >"$build.configure.log" 2>&1 || {
    cat "$build.configure.log"
    exit 1
}
grep '^-- srexport:' "$build.configure.log" | sed 's/^-- /cpp: /'
echo "cpp: build (-j2)"
cmake --build "$build" -j2 >"$build.build.log" 2>&1 || {
    tail -60 "$build.build.log"
    exit 1
}
if grep -q 'warning' "$build.build.log"; then
    echo "cpp: compiler warnings:"
    grep -A3 'warning' "$build.build.log" | head -40
fi
echo "cpp: ctest"
ctest --test-dir "$build" --output-on-failure --timeout 300
echo "cpp: OK in $(( $(date +%s) - start )) s"
