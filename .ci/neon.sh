#!/usr/bin/env bash
# CI: the NEON path on an x86-64 Debian machine. Cross-compiles the C++ kernel
# tests for aarch64 (Debian's g++-aarch64-linux-gnu, cmake/aarch64-linux-gnu.cmake)
# and runs them under qemu-aarch64: every SIMD path of the (emulated) arm64 CPU,
# i.e. scalar and neon, against the scalar path, bitwise.
#
#   .ci/neon.sh [cases [bin_cases]]   # cases: random geometries, default 400;
#                                     # bin_cases: bin-reduction problems, default 15
#
# Installs the cross compiler, qemu-user and cmake with apt-get if they are
# missing (needs root or sudo). Build directory: build/neon.
set -euo pipefail
cd "$(dirname "$0")/.."

CASES="${1:-400}"
BIN_CASES="${2:-15}"
BUILD=build/neon
SYSROOT=/usr/aarch64-linux-gnu

# ------------------------------------------------------------------ tools
find_qemu() { command -v qemu-aarch64 || command -v qemu-aarch64-static || true; }

need=()
command -v aarch64-linux-gnu-g++ > /dev/null || need+=(g++-aarch64-linux-gnu)
[ -e "$SYSROOT/include/stdio.h" ] || need+=(libc6-dev-arm64-cross)
[ -n "$(find_qemu)" ] || need+=(qemu-user)
command -v cmake > /dev/null || need+=(cmake)
command -v make > /dev/null || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
  echo "neon.sh: installing ${need[*]}"
  SUDO=
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  log="$(mktemp)"
  apt_get() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -y -qq "$@" >> "$log" 2>&1; }
  if ! { apt_get update && apt_get install --no-install-recommends "${need[@]}"; }; then
    # Some releases ship qemu-aarch64 only in qemu-user-static.
    need=("${need[@]/#qemu-user/qemu-user-static}")
    apt_get install --no-install-recommends "${need[@]}" || { cat "$log" >&2; exit 1; }
  fi
  rm -f "$log"
fi
QEMU="$(find_qemu)"
[ -n "$QEMU" ] || { echo "neon.sh: qemu-aarch64 not found" >&2; exit 1; }

# ------------------------------------------------------------------ build
cmake -S . -B "$BUILD" \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release \
  -DFASTPOOL_BUILD_PYTHON=OFF -DFASTPOOL_BUILD_TESTS=ON -DFASTPOOL_WERROR=ON > /dev/null
cmake --build "$BUILD" -j 2 > /dev/null

# ------------------------------------------------------------------ run
# -L: the target's dynamic loader, libstdc++ and libgomp come from the cross sysroot.
out="$("$QEMU" -L "$SYSROOT" "$BUILD/cpp/fastpool_kernel_tests" "$CASES")" || {
  echo "$out"
  echo "neon.sh: kernel tests failed under qemu-aarch64" >&2
  exit 1
}
echo "$out"
# On arm64 the paths are scalar and neon: fewer means dispatch did not offer neon.
if ! grep -q "x 2 SIMD paths (scalar, neon)" <<< "$out"; then
  echo "neon.sh: expected 2 SIMD paths (scalar, neon) under qemu-aarch64" >&2
  exit 1
fi

# The bin reductions (adaptive, pyramid, LP, GeM), the same way.
out="$("$QEMU" -L "$SYSROOT" "$BUILD/cpp/fastpool_bin_tests" "$BIN_CASES")" || {
  echo "$out"
  echo "neon.sh: bin reduction tests failed under qemu-aarch64" >&2
  exit 1
}
echo "$out"
if ! grep -q "x 2 SIMD paths (scalar, neon)" <<< "$out"; then
  echo "neon.sh: expected 2 SIMD paths (scalar, neon) under qemu-aarch64 (bin tests)" >&2
  exit 1
fi

# Vector math and transposes, the same way.
"$QEMU" -L "$SYSROOT" "$BUILD/cpp/fastpool_math_tests" 20000 || {
  echo "neon.sh: math tests failed under qemu-aarch64" >&2
  exit 1
}
