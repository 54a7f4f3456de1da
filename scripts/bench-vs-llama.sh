#!/usr/bin/env bash
# gemlet against the llama.cpp reference, side by side in one run, on the same models and
# thread counts: llama-bench and `gemlet bench` (as it starts, and with --repack) alternately
# (pp and tg, t/s), peak RSS and time to first token of a 2048-context run (a ~64-token
# prompt, 128 generated), the machine's
# memory read bandwidth and the fraction of it token generation reaches. Prints the ratios
# gemlet / llama.cpp. Performance is reported here, never asserted in tests.
#
# usage: scripts/bench-vs-llama.sh [--all] [-t "2"] [-m "MODEL..."] [--rounds 3] [-r 2]
#   --all        also the Q8_0 and Q4_0 files and 1 thread (about 15 minutes on 2 cores)
#   -t LIST      thread counts (default: 2)
#   -m LIST      model files (default: the Q4_K_M model; with --all also Q8_0 and Q4_0, which
#                scripts/fetch-model.sh makes when LLAMA_QUANTIZE is set)
#   --rounds N   alternations of llama-bench and gemlet bench (default 3)
#   -r N         repetitions inside each run (default 2; each run also warms up)
#   -p N, -n N   prompt and generated tokens of the pp/tg tests (default 512, 128)
# env: GEMLET (a gemlet binary; default: cargo build --release), LLAMA_DIR (default
#      ~/.cache/llama-cpp-ref, built by scripts/build-llama-cpp.sh if missing).
# Needs: python3 (aggregation), cc, GNU time (apt package `time`, installed when missing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
models_dir="$HOME/.cache/gemlet/models"
threads="2"
models=""
rounds=3
reps=2
n_prompt=512
n_gen=128
all=0
while [ $# -gt 0 ]; do
  case "$1" in
    --all) all=1 ;;
    -t) threads="$2"; shift ;;
    -m) models="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    -r) reps="$2"; shift ;;
    -p) n_prompt="$2"; shift ;;
    -n) n_gen="$2"; shift ;;
    *) sed -n '2,20p' "$0" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$models" ]; then
  models="$models_dir/gemma-3-270m-q4_k_m.gguf"
  [ "$all" = 1 ] && models="$models $models_dir/gemma-3-270m-q8_0.gguf $models_dir/gemma-3-270m-q4_0.gguf"
fi
[ "$all" = 1 ] && [ "$threads" = 2 ] && threads="2 1"

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
LLAMA_DIR="${LLAMA_DIR:-$HOME/.cache/llama-cpp-ref}"
bash "$here/build-llama-cpp.sh" "$LLAMA_DIR" >/dev/null
bin="$LLAMA_DIR/llama.cpp-build/bin"
if [ -z "${GEMLET:-}" ]; then
  (cd "$root" && cargo build --release --quiet)
  GEMLET="${CARGO_TARGET_DIR:-$root/target}/release/gemlet"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cc -O2 -pthread -o "$work/membw" "$here/membw.c"

# A ~64-token English prompt for the memory and first-token runs.
prompt="The old lighthouse keeper climbed the narrow stairs every evening to light the lamp. \
Ships far out at sea watched for its beam, and the fishermen of the village trusted it more \
than any chart. One stormy night in late autumn, the lamp would not light."

echo "gemlet: $("$GEMLET" --version)"
echo "llama.cpp: $("$bin/llama-bench" --version 2>&1 | head -1 || true) ($bin)"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
bw="$("$work/membw" "$(nproc)")"
echo "memory read bandwidth: $bw GB/s ($(nproc) threads, 1 GiB buffer)"
echo

for model in $models; do
  [ -f "$model" ] || { echo "missing $model: run scripts/fetch-model.sh (LLAMA_QUANTIZE=... for Q8_0/Q4_0)" >&2; exit 1; }
  for t in $threads; do
    tag="$(basename "$model" .gguf)-t$t"
    for i in $(seq "$rounds"); do
      # llama-bench's defaults otherwise (flash attention auto, repacking on, -b 2048 -ub 512).
      "$bin/llama-bench" -m "$model" -t "$t" -p "$n_prompt" -n "$n_gen" -r "$reps" -o json \
        >"$work/$tag.llama.$i.json" 2>/dev/null
      "$GEMLET" bench -m "$model" -t "$t" -p "$n_prompt" -n "$n_gen" -r "$reps" -o json \
        >"$work/$tag.gemlet.$i.json"
      "$GEMLET" bench -m "$model" -t "$t" -p "$n_prompt" -n "$n_gen" -r "$reps" -o json \
        --repack 1 >"$work/$tag.gemlet-repack.$i.json"
    done
    # Peak RSS and time to first token, 2048 context, 128 tokens generated past EOS; one run of
    # each per round, alternating, and the medians are reported.
    for i in $(seq "$rounds"); do
      /usr/bin/time -v "$bin/llama-completion" -m "$model" -t "$t" -c 2048 -n 128 --temp 0 \
        --ignore-eos -no-cnv -p "$prompt" >"$work/$tag.llama.$i.out" 2>"$work/$tag.llama.$i.err" </dev/null
      /usr/bin/time -v "$GEMLET" generate -m "$model" -t "$t" -c 2048 -n 128 --temp 0 \
        --ignore-eos --json -p "$prompt" >"$work/$tag.gemlet.$i.out" 2>"$work/$tag.gemlet.$i.err"
      /usr/bin/time -v "$GEMLET" generate -m "$model" -t "$t" -c 2048 -n 128 --temp 0 --repack \
        --ignore-eos --json -p "$prompt" >"$work/$tag.gemlet-repack.$i.out" 2>"$work/$tag.gemlet-repack.$i.err"
    done
    echo "$tag" >>"$work/tags"
  done
done

python3 - "$work" "$bw" <<'EOF'
import json, re, statistics, sys
work, bw = sys.argv[1], float(sys.argv[2])
tags = open(f"{work}/tags").read().split()

def bench(tag, tool):
    """Per test: all samples (t/s) over the rounds, and the model's bytes."""
    out, size = {}, 0
    i = 1
    while True:
        try:
            rows = json.load(open(f"{work}/{tag}.{tool}.{i}.json"))
        except FileNotFoundError:
            break
        for r in rows:
            name = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
            out.setdefault(name, []).extend(r["samples_ts"])
            size = r["model_size"]
        i += 1
    return out, size

def runs(tag, tool, f):
    """f over every round's run of `generate`/llama-completion, median."""
    xs, i = [], 1
    while True:
        try:
            xs.append(f(open(f"{work}/{tag}.{tool}.{i}.err").read(), f"{work}/{tag}.{tool}.{i}.out"))
        except FileNotFoundError:
            break
        i += 1
    return statistics.median(xs) if xs else float("nan")

def rss_mb(tag, tool):
    def one(err, _):
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
        return int(m.group(1)) / 1024 if m else float("nan")
    return runs(tag, tool, one)

def ttft_ms(tag, tool):
    def one(err, out):
        if tool.startswith("gemlet"):
            return json.load(open(out))["timings"]["time_to_first_token_ms"]
        # llama.cpp: the prompt's evaluation (the first token is sampled right after it).
        m = re.search(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", err)
        return float(m.group(1)) if m else float("nan")
    return runs(tag, tool, one)

def fmt(xs):
    return f"{statistics.mean(xs):8.2f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:5.2f}"

# gemlet as it starts by default (weights used from the map as they are) and with --repack
# (llama.cpp's default, which llama-bench and llama-completion run here).
print("| model, threads | measure | llama.cpp | gemlet | gemlet / llama.cpp | gemlet --repack | --repack / llama.cpp |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
fractions = []
for tag in tags:
    lb, size = bench(tag, "llama")
    gb, _ = bench(tag, "gemlet")
    rb, _ = bench(tag, "gemlet-repack")
    for test in lb:
        l = lb[test]
        g, r = gb.get(test, [float("nan")]), rb.get(test, [float("nan")])
        ml = statistics.mean(l)
        print(f"| {tag} | {test} t/s | {fmt(l)} | {fmt(g)} | {statistics.mean(g) / ml:.3f} "
              f"| {fmt(r)} | {statistics.mean(r) / ml:.3f} |")
        if test.startswith("tg"):
            # Every weight is read once per generated token (the output head is the tied
            # embedding, so it too is read whole).
            fractions.append((tag, size, ml, statistics.mean(g), statistics.mean(r)))
    for name, f, unit in (("peak RSS, -c 2048", rss_mb, "MB"), ("time to first token", ttft_ms, "ms")):
        l, g, r = f(tag, "llama"), f(tag, "gemlet"), f(tag, "gemlet-repack")
        print(f"| {tag} | {name}, {unit} (median) | {l:8.1f} | {g:8.1f} | {g / l:.3f} | {r:8.1f} | {r / l:.3f} |")
print()
print(f"memory read bandwidth: {bw:.1f} GB/s")
for tag, size, l, g, r in fractions:
    print(f"{tag}: {size / 1e6:.0f} MB of weights per token; tg reaches "
          f"llama.cpp {size * l / 1e9:.1f} GB/s ({100 * size * l / 1e9 / bw:.0f}%), "
          f"gemlet {size * g / 1e9:.1f} GB/s ({100 * size * g / 1e9 / bw:.0f}%), "
          f"gemlet --repack {size * r / 1e9:.1f} GB/s ({100 * size * r / 1e9 / bw:.0f}%)")
EOF
