#!/usr/bin/env bash
# Regenerates tiny models in tests/fixtures/tiny/ and their llama.cpp logits (the reference
# the tiny_models tests compare with): scripts/make_tiny_gguf.py writes the GGUFs,
# scripts/llama-ref/logits.cpp (../shared/tools/llama-ref/logits.cpp) runs them through
# llama.cpp 0c1e570 (scripts/build-llama-cpp.sh), one thread, its default settings; the
# embedding models go through scripts/llama-ref/embed_ref.cpp (../shared's) instead.
#   scripts/make-tiny-fixtures.sh                       # every model
#   scripts/make-tiny-fixtures.sh tiny-gemma4-f32 ...   # some
# Needs python3 with the PyPI packages gguf (0.19.0) and numpy (a venv under
# ~/.cache/gemlet/venv is made when they are missing). Not part of the test command: the
# fixtures are committed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${TINY_OUT:-$root/tests/fixtures/tiny}"
llama="${LLAMA_DIR:-$HOME/.cache/llama-cpp-ref}"
py="${PYTHON:-python3}"
if ! "$py" -c 'import gguf, numpy' 2>/dev/null; then
  venv="$HOME/.cache/gemlet/venv"
  # Debian's python3 makes venvs only with python3-venv (ensurepip).
  if ! python3 -c 'import ensurepip' 2>/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy gguf==0.19.0
  py="$venv/bin/python"
fi
eval "$(bash "$root/scripts/build-llama-cpp.sh" "$llama" | grep -E '^(BIN_DIR|SRC_DIR)=')"
ref="$llama/llama-ref-logits"
if [ ! -x "$ref" ] || [ "$root/scripts/llama-ref/logits.cpp" -nt "$ref" ]; then
  ${CXX:-g++} -O2 -std=c++17 -I"$SRC_DIR/include" -I"$SRC_DIR/ggml/include" \
    "$root/scripts/llama-ref/logits.cpp" -o "$ref" \
    -L"$BIN_DIR" -lllama -lggml -lggml-base -Wl,-rpath,"$BIN_DIR"
fi
embed="$llama/llama-ref-embed"
if [ ! -x "$embed" ] || [ "$root/scripts/llama-ref/embed_ref.cpp" -nt "$embed" ]; then
  ${CXX:-g++} -O2 -std=c++17 -I"$SRC_DIR/include" -I"$SRC_DIR/ggml/include" \
    "$root/scripts/llama-ref/embed_ref.cpp" -o "$embed" \
    -L"$BIN_DIR" -lllama -lggml -lggml-base -Wl,-rpath,"$BIN_DIR"
fi
# The embedding models' texts: short, past the sliding window (8) on both sides, byte
# fallback, one token of text.
texts=(-p "hello world"
  -p "the water was hot and the day was long, we can go out and find some new work in the little round place"
  -p "The Gemma model, 2025!"
  -p "a")
only=()
for m in "$@"; do only+=(--only "$m"); done
"$py" "$root/scripts/make_tiny_gguf.py" --outdir "$out" "${only[@]}"
for f in "$out"/tiny-*.gguf; do
  name="$(basename "$f" .gguf)"
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  case "$name" in
    *embedding*) "$embed" -m "$f" "${texts[@]}" -t 1 > "${f%.gguf}.embed.json" ;;
    *) "$ref" "$f" "${f%.gguf}.logits.json" --threads 1 --commit 0c1e570 ;;
  esac
done
