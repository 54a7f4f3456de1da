#!/usr/bin/env bash
# gemlet against the llama.cpp reference, side by side in one run, on the same models and
# thread counts: llama-bench and `gemlet bench` (as it starts, and with --no-repack) alternately
# (pp and tg, t/s), each on its own freshly written copy of the model (see fresh_copy), with
# llama.cpp also on gemlet's copy as a control; peak RSS and time to first token of a
# 2048-context run (a ~64-token prompt, 128 generated), the machine's memory read bandwidth
# and the fraction of it token generation reaches. Prints the ratios
# gemlet / llama.cpp. Performance is reported here, never asserted in tests.
#
# usage: scripts/bench-vs-llama.sh [--all] [-t "2"] [-m "MODEL..."] [--rounds 3] [-r 2]
#   --all        also the Q8_0 and Q4_0 files and 1 thread (about 45 minutes on 2 cores)
#   -t LIST      thread counts (default: 2)
#   -m LIST      model files (default: the Q4_K_M model; with --all also Q8_0 and Q4_0, which
#                scripts/fetch-model.sh makes when LLAMA_QUANTIZE is set)
#   --rounds N   alternations of llama-bench and gemlet bench (default 3); the paired ratios
#                at the end give a 95% confidence interval over the rounds, which needs
#                more of them (8 or more) to resolve differences of a few percent
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

# gemlet as it starts (the types whose repacked kernels are faster for single tokens too are
# repacked) and with --no-repack (every weight from the map as the file has it).
variants=(gemlet gemlet-norepack)
bench_flags=("" "--repack 0")
generate_flags=("" "--no-repack")

# Each program runs on its own copy of the model, written just before, as a user has a model
# just downloaded or assembled: the page cache holds such a file in 4 KiB folios (forced here,
# so that the state does not depend on how the copy was made), and a map of it gets 4 KiB pages
# until the cache is evicted. gemlet re-reads its copy into 2 MiB folios at its first load; the
# same copy afterwards also serves llama.cpp as a control ("llama.cpp, huge-page cache"), to
# show what is the page size and what is the program.
copies="$(mktemp -d "$models_dir/.bench.XXXXXX")"
trap 'rm -rf "$work" "$copies"' EXIT
fresh_copy() {
  cp "$1" "$2"
  sync "$2"
  python3 - "$2" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
at = 0
while os.pread(fd, 4096, at):
    at += 4096
PY
}

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
  lcopy="$copies/llama.gguf"
  gcopy="$copies/gemlet.gguf"
  fresh_copy "$model" "$lcopy"
  fresh_copy "$model" "$gcopy"
  name="$(basename "$model" .gguf)"
  for load in first second; do
    "$GEMLET" generate -m "$gcopy" -n 1 --temp 0 --json -p "$prompt" >"$work/$name.load-$load.json"
  done
  for t in $threads; do
    tag="$name-t$t"
    for i in $(seq "$rounds"); do
      # llama-bench's defaults otherwise (flash attention auto, repacking on, -b 2048 -ub 512).
      for tool in llama llama-huge; do
        copy="$lcopy"; [ "$tool" = llama-huge ] && copy="$gcopy"
        "$bin/llama-bench" -m "$copy" -t "$t" -p "$n_prompt" -n "$n_gen" -r "$reps" -o json \
          >"$work/$tag.$tool.$i.json" 2>/dev/null
      done
      for v in "${!variants[@]}"; do
        # shellcheck disable=SC2086 # the flags are words
        "$GEMLET" bench -m "$gcopy" -t "$t" -p "$n_prompt" -n "$n_gen" -r "$reps" -o json \
          ${bench_flags[$v]} >"$work/$tag.${variants[$v]}.$i.json"
      done
    done
    # Peak RSS and time to first token, 2048 context, 128 tokens generated past EOS; one run of
    # each per round, alternating, and the medians are reported.
    for i in $(seq "$rounds"); do
      for tool in llama llama-huge; do
        copy="$lcopy"; [ "$tool" = llama-huge ] && copy="$gcopy"
        /usr/bin/time -v "$bin/llama-completion" -m "$copy" -t "$t" -c 2048 -n 128 --temp 0 \
          --ignore-eos -no-cnv -p "$prompt" >"$work/$tag.$tool.$i.out" 2>"$work/$tag.$tool.$i.err" </dev/null
      done
      for v in "${!variants[@]}"; do
        # shellcheck disable=SC2086
        /usr/bin/time -v "$GEMLET" generate -m "$gcopy" -t "$t" -c 2048 -n 128 --temp 0 \
          ${generate_flags[$v]} --ignore-eos --json -p "$prompt" \
          >"$work/$tag.${variants[$v]}.$i.out" 2>"$work/$tag.${variants[$v]}.$i.err"
      done
    done
    echo "$tag" >>"$work/tags"
  done
done

python3 - "$work" "$bw" <<'EOF'
import json, math, re, statistics, sys
work, bw = sys.argv[1], float(sys.argv[2])
tags = open(f"{work}/tags").read().split()

def rounds(tag, tool):
    """Per round, in order: per test, the samples (t/s); and the model's bytes."""
    out, size, i = [], 0, 1
    while True:
        try:
            rows = json.load(open(f"{work}/{tag}.{tool}.{i}.json"))
        except FileNotFoundError:
            break
        tests = {}
        for r in rows:
            name = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
            tests.setdefault(name, []).extend(r["samples_ts"])
            size = r["model_size"]
        out.append(tests)
        i += 1
    return out, size

def bench(tag, tool):
    """Per test: all samples (t/s) over the rounds, and the model's bytes."""
    rs, size = rounds(tag, tool)
    out = {}
    for tests in rs:
        for name, xs in tests.items():
            out.setdefault(name, []).extend(xs)
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

def round_means(tag, tool):
    """Per test: each round's mean t/s, in round order."""
    out = {}
    for tests in rounds(tag, tool)[0]:
        for name, xs in tests.items():
            out.setdefault(name, []).append(statistics.mean(xs))
    return out

# Two-sided 95% quantiles of Student's t by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 14: 2.145, 16: 2.120, 20: 2.086, 30: 2.042}

def paired_ratio(a, b):
    """The ratio a / b from rounds run side by side: the geometric mean of the per-round
    ratios and its 95% confidence interval (t over the rounds' log-ratios), so that a host
    that is busier in one round than another moves both sides of that round's ratio."""
    logs = [math.log(x / y) for x, y in zip(a, b)]
    n = len(logs)
    m = statistics.mean(logs)
    if n < 2:
        return math.exp(m), float("nan"), float("nan"), n
    t = T95.get(n - 1) or T95[max(k for k in T95 if k <= n - 1)]
    half = t * statistics.stdev(logs) / math.sqrt(n)
    return math.exp(m), math.exp(m - half), math.exp(m + half), n

def fmt(xs):
    return f"{statistics.mean(xs):8.2f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:5.2f}"

variants = ["gemlet", "gemlet-norepack"]
labels = ["gemlet", "gemlet --no-repack"]
print("| model, threads | measure | llama.cpp | " + " | ".join(f"{l} | ratio" for l in labels)
      + " | llama.cpp, huge-page cache | gemlet / it |")
print("| --- | --- | ---: |" + " ---: | ---: |" * (len(labels) + 1))
fractions = []
for tag in tags:
    lb, size = bench(tag, "llama")
    hb, _ = bench(tag, "llama-huge")
    vb = [bench(tag, v)[0] for v in variants]
    for test in lb:
        l = lb[test]
        ml = statistics.mean(l)
        cells = []
        for b in vb:
            g = b.get(test, [float("nan")])
            cells.append(f"{fmt(g)} | {statistics.mean(g) / ml:.3f}")
        h = hb.get(test, [float("nan")])
        g = statistics.mean(vb[0].get(test, [float("nan")]))
        cells.append(f"{fmt(h)} | {g / statistics.mean(h):.3f}")
        print(f"| {tag} | {test} t/s | {fmt(l)} | " + " | ".join(cells) + " |")
        if test.startswith("tg"):
            # Every weight is read once per generated token (the output head is the tied
            # embedding, so it too is read whole).
            fractions.append((tag, size, ml, [statistics.mean(b.get(test, [float("nan")])) for b in vb],
                              statistics.mean(h)))
    for name, f, unit in (("peak RSS, -c 2048", rss_mb, "MB"), ("time to first token", ttft_ms, "ms")):
        l = f(tag, "llama")
        cells = [f"{f(tag, v):8.1f} | {f(tag, v) / l:.3f}" for v in variants]
        h = f(tag, "llama-huge")
        cells.append(f"{h:8.1f} | {f(tag, variants[0]) / h:.3f}")
        print(f"| {tag} | {name}, {unit} (median) | {l:8.1f} | " + " | ".join(cells) + " |")
print()
print("Paired ratios, per round (each round runs every program once, one after the other): the")
print("geometric mean of the rounds' ratios and its 95% confidence interval. An interval that")
print("holds 1 does not resolve a difference.")
print("| model, threads | test | ratio | mean | 95% interval | rounds |")
print("| --- | --- | --- | ---: | --- | ---: |")
for tag in tags:
    r = {tool: round_means(tag, tool) for tool in ["llama"] + variants}
    for test in r["llama"]:
        pairs = [("gemlet / llama.cpp", "gemlet", "llama"),
                 ("gemlet --no-repack / llama.cpp", "gemlet-norepack", "llama"),
                 ("gemlet (default) / --no-repack", "gemlet", "gemlet-norepack")]
        for label, a, b in pairs:
            if test in r[a] and test in r[b]:
                m, lo, hi, n = paired_ratio(r[a][test], r[b][test])
                print(f"| {tag} | {test} | {label} | {m:.3f} | {lo:.3f} – {hi:.3f} | {n} |")
print()
print(f"memory read bandwidth: {bw:.1f} GB/s")
for tag, size, l, gs, h in fractions:
    parts = [f"llama.cpp {size * l / 1e9:.1f} GB/s ({100 * size * l / 1e9 / bw:.0f}%)"]
    parts += [f"{lab} {size * g / 1e9:.1f} GB/s ({100 * size * g / 1e9 / bw:.0f}%)" for lab, g in zip(labels, gs)]
    parts.append(f"llama.cpp on huge pages {size * h / 1e9:.1f} GB/s ({100 * size * h / 1e9 / bw:.0f}%)")
    print(f"{tag}: {size / 1e6:.0f} MB of weights per token; tg reaches " + ", ".join(parts))
print()
for name in dict.fromkeys(t.rsplit("-t", 1)[0] for t in tags):
    for load in ("first", "second"):
        j = json.load(open(f"{work}/{name}.load-{load}.json"))
        hp = j.get("huge_pages") or {}
        print(f"{name}: gemlet's {load} load of a freshly written copy: {j['timings']['load_ms']:.0f} ms, "
              f"{hp.get('bytes', 0) / 2**20:.0f} of {hp.get('possible', 0) / 2**20:.0f} MiB on huge pages"
              + (" (re-read from the file into 2 MiB folios)" if hp.get("refaulted") else ""))
EOF
