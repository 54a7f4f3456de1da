#!/usr/bin/env bash
# llama.cpp's greedy runs of the Q4_0 model with weight repacking off and on -- the kernels
# gemlet runs by default and with --repack -- made on THIS machine, for
# tests/it/real_model_greedy.rs's same-kernels tests.
#
# Why on this machine: ggml's kernels sum in a different order on different CPUs (AVX2 or
# AVX-512, their widths and tile sizes), and over 18 layers that moves logits by up to 2 (measured:
# llama.cpp itself, same commit and flags, Zen 1 against an AVX512 Xeon). On one CPU, gemlet
# and llama.cpp run the same code on the same inputs, and agree to float rounding.
#
# usage: scripts/llama-ref/same-cpu-ref.sh [OUT_DIR]   (default ~/.cache/gemlet/refs)
# Writes OUT_DIR/gemma3-270m-q4_0-no-repack-greedy.jsonl and -repack-greedy.jsonl, each with a
# .cpu stamp (the CPU's model name and flags); skips a run when its stamp matches this CPU. Needs the llama.cpp tools
# (scripts/build-llama-cpp.sh) and the Q4_0 model (LLAMA_QUANTIZE=... scripts/fetch-model.sh).
# ref.cpp is ../shared/tools/llama-ref/ref.cpp; the prompts come from the fixture of the same
# run made elsewhere (tests/fixtures/gemma3-270m-q4_0-no-repack-greedy.jsonl).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out_dir="${1:-$HOME/.cache/gemlet/refs}"
llama="${LLAMA_DIR:-$HOME/.cache/llama-cpp-ref}"
model="${GEMLET_MODELS:-$HOME/.cache/gemlet/models}/gemma-3-270m-q4_0.gguf"
mkdir -p "$out_dir"

# The same signature tests/it/common.rs computes: the first processor's model name and flags.
cpu="$(awk -F': ' '/^model name/ && !m {print; m=1} /^(flags|Features)/ && !f {print; f=1}' /proc/cpuinfo)"
fresh() { [ -f "$1" ] && [ "$(cat "$1.cpu" 2>/dev/null)" = "$cpu" ]; }
if fresh "$out_dir/gemma3-270m-q4_0-no-repack-greedy.jsonl" && fresh "$out_dir/gemma3-270m-q4_0-repack-greedy.jsonl"; then
  echo "$out_dir: the references are this CPU's (skipping)"
  exit 0
fi
[ -f "$model" ] || { echo "missing $model: LLAMA_QUANTIZE=... scripts/fetch-model.sh" >&2; exit 1; }
eval "$(bash "$root/scripts/build-llama-cpp.sh" "$llama" | grep -E '^(BIN_DIR|SRC_DIR)=')"
ref="$llama/llama-ref"
if [ ! -x "$ref" ] || [ "$here/ref.cpp" -nt "$ref" ]; then
  ${CXX:-g++} -O2 -std=c++17 -I"$SRC_DIR/include" -I"$SRC_DIR/ggml/include" "$here/ref.cpp" \
    -o "$ref" -L"$BIN_DIR" -lllama -lggml -lggml-base -Wl,-rpath,"$BIN_DIR"
fi
for repack in 0 1; do
name=$([ "$repack" = 1 ] && echo repack || echo no-repack)
out="$out_dir/gemma3-270m-q4_0-$name-greedy.jsonl"
fresh "$out" && continue
python3 - "$ref" "$model" "$root/tests/fixtures/gemma3-270m-q4_0-no-repack-greedy.jsonl" "$out.tmp" "$repack" <<'PY'
import json, os, subprocess, sys, tempfile
ref, model, prompts, out, repack = sys.argv[1:]
lines = []
with tempfile.TemporaryDirectory() as td:
    for line in open(prompts, encoding="utf-8"):
        case = json.loads(line)
        pf = os.path.join(td, "prompt.txt")
        with open(pf, "wb") as f:
            f.write(case["prompt"].encode("utf-8"))
        # The settings of the fixture: 1 thread, context 2048, batch 512, top-10 logits at 5
        # positions; repacking as asked.
        cmd = [ref, "-m", model, "-f", pf, "-n", str(case["n_predict"]), "-t", "1", "-c", "2048",
               "-b", "512", "--top-k", "10", "--top-pos", "5", "--fa", "auto", "--repack", repack,
               "--label", case["id"]]
        r = subprocess.run(cmd, capture_output=True, check=True)
        obj = json.loads(r.stdout.decode("utf-8"))
        obj = {"id": case["id"], **{k: v for k, v in obj.items() if k != "id"}}
        lines.append(json.dumps(obj, ensure_ascii=False))
with open(out, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
PY
mv "$out.tmp" "$out"
printf '%s' "$cpu" >"$out.cpu"
echo "wrote $out"
done
