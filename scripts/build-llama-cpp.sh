#!/usr/bin/env bash
# Build the reference llama.cpp (commit 0c1e570, as vendored in the llama-cpp-python 0.3.36
# sdist) CPU tools + shared libs into a directory. Idempotent: skips when already built.
#
# usage: scripts/build-llama-cpp.sh [DIR]  (default DIR: ~/.cache/llama-cpp-ref)
# Used by .ci/run for llama-quantize (the Q8_0/Q4_0 test models) and by the side-by-side
# benchmarks. Ported from ../shared/tools/build-llama-cpp.sh.
#   env JOBS=2 (parallel compile jobs); FETCH_ONLY=1 stops after download + unpack (headers only)
# Layout produced:
#   DIR/sdist/llama_cpp_python-0.3.36.tar.gz
#   DIR/llama_cpp_python-0.3.36/vendor/llama.cpp      (source; include/ and ggml/include/ hold the headers)
#   DIR/llama.cpp-build/bin/                           (llama-bench, llama-completion, llama-simple,
#                                                       llama-quantize, llama-tokenize, llama-gguf-split,
#                                                       llama-perplexity, libllama.so, libggml*.so)
# Notes:
#  * GGML_NATIVE is on (the default): binaries use -march=native and are not portable; AMX is
#    left out (see CMAKE_ARGS).
#  * `pip download --no-binary :all:` would build cmake and ninja from source just to read the
#    sdist's metadata (many minutes of CPU); --no-binary llama-cpp-python avoids that.
#  * The classic CLI is `llama-completion` here; `llama-cli` needs the server build (not built).
#  * Wall time on the 2-core box: ~9 min under load, ~5 min CPU-bound (565 s user at -j2).
set -euo pipefail

DIR="${1:-$HOME/.cache/llama-cpp-ref}"
JOBS="${JOBS:-2}"
VER=0.3.36
COMMIT=0c1e570
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
SRC="$DIR/llama_cpp_python-$VER/vendor/llama.cpp"
BUILD="$DIR/llama.cpp-build"
STAMP="$BUILD/.llama-cpp-ref-built"
TARGETS=(llama llama-bench llama-completion llama-simple llama-quantize llama-tokenize llama-gguf-split llama-perplexity)
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF
            -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMIT=$COMMIT)
# No AMX on x86: -march=native turns it on where the CPU reports it, and llama.cpp then moves
# Q4_0/Q8_0 weights to its AMX buffer type. gemlet never uses that buffer type (it repacks
# through CPU_REPACK), so the reference would run other kernels than gemlet's, and in a VM whose
# CPU reports AMX without enabling its tile state (seen: a Xeon with amx_tile in cpuid), the
# first AMX instruction is SIGILL. Explicit -mno-* flags win over -march's whatever the order.
if [ "$(uname -m)" = x86_64 ]; then
  CMAKE_ARGS+=("-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
               "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
fi
STAMP_TEXT="llama-cpp-python $VER / llama.cpp $COMMIT / ${CMAKE_ARGS[*]} / ${TARGETS[*]}"

print_paths() {
  echo "BIN_DIR=$BUILD/bin"
  echo "LIB_DIR=$BUILD/bin"
  echo "INCLUDE_DIRS=$SRC/include $SRC/ggml/include"
  echo "SRC_DIR=$SRC"
}

all_present() {
  local b
  for b in llama-bench llama-completion llama-simple llama-quantize llama-tokenize llama-gguf-split llama-perplexity libllama.so libggml.so libggml-base.so libggml-cpu.so; do
    [ -e "$BUILD/bin/$b" ] || return 1
  done
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ] && all_present; then
  echo "llama.cpp reference already built in $BUILD (skipping)"
  print_paths
  exit 0
fi

# 1. sdist (pinned version, verified hash)
mkdir -p "$DIR/sdist"
TARBALL="$DIR/sdist/llama_cpp_python-$VER.tar.gz"
if [ ! -f "$TARBALL" ] || ! echo "$SDIST_SHA256  $TARBALL" | sha256sum -c --status; then
  rm -f "$TARBALL"
  python3 -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VER" -d "$DIR/sdist"
fi
echo "$SDIST_SHA256  $TARBALL" | sha256sum -c

# 2. unpack
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  tar xzf "$TARBALL" -C "$DIR"
fi

if [ "${FETCH_ONLY:-0}" = 1 ]; then
  echo "FETCH_ONLY=1: source unpacked in $SRC (not built)"
  print_paths
  exit 0
fi

# 3. toolchain
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update
    apt-get install -y cmake build-essential
  else
    echo "need cmake and a C++ compiler" >&2
    exit 1
  fi
fi

# 4. configure + build (these are the exact commands used for the anchor figures)
cmake -S "$SRC" -B "$BUILD" "${CMAKE_ARGS[@]}"
cmake --build "$BUILD" --config Release -j"$JOBS" --target "${TARGETS[@]}"

all_present
echo "$STAMP_TEXT" > "$STAMP"
echo "built llama.cpp reference in $BUILD"
print_paths
