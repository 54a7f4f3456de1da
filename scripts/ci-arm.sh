#!/usr/bin/env bash
# The ARM part of CI: cross-builds the static aarch64 and armv7 binaries and runs them under
# qemu-user against the x86 build: --version, inspect of a tiny fixture, greedy ids of a tiny
# model, the startup CPU check's error, and greedy tokens of the real model.
#
# usage: scripts/ci-arm.sh X86_GEMLET
# env CROSS_TARGET_DIR: where the cross builds go (default ~/.cache/gemlet/cross-target; kept
# apart from the x86 target dir, which Debian's rustc would share with rustup's)
set -euo pipefail
cd "$(dirname "$0")/.."
X86="${1:?usage: scripts/ci-arm.sh X86_GEMLET}"
export CARGO_TARGET_DIR="${CROSS_TARGET_DIR:-$HOME/.cache/gemlet/cross-target}"
MODEL="${GEMLET_MODEL:-$HOME/.cache/gemlet/models/gemma-3-270m-q4_k_m.gguf}"
TINY=tests/fixtures/tiny/tiny-gemma3-q8_0.gguf
start=$SECONDS
fail() { echo "ci-arm: $*" >&2; exit 1; }
ids() { python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"])'; }

for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  t0=$SECONDS
  bash scripts/cross-build.sh "$target" > "/tmp/gemlet-cross-$target.log" 2>&1 \
    || { tail -30 "/tmp/gemlet-cross-$target.log"; fail "cross build of $target failed"; }
  bin="$CARGO_TARGET_DIR/$target/release/gemlet"
  case "$target" in
    aarch64*) qemu=qemu-aarch64; old_cpu="" ;;
    armv7*)   qemu=qemu-arm;     old_cpu=cortex-a8 ;;  # VFPv3 + NEON, no VFPv4
  esac
  echo "== $target: $(stat -c %s "$bin") bytes, built in $((SECONDS - t0)) s"
  "$qemu" "$bin" --version
  "$qemu" "$bin" inspect "$TINY" | head -3
  a=$("$qemu" "$bin" generate -m "$TINY" -p "hello world" -n 16 --temp 0 --json -t 2 | ids)
  b=$("$X86" generate -m "$TINY" -p "hello world" -n 16 --temp 0 --json -t 2 | ids)
  [ "$a" = "$b" ] || fail "$target tiny-model ids $a differ from x86's $b"
  echo "tiny model greedy ids equal to x86: $a"
  # A bundle made by the ARM build runs its model without -m; cut short, it says so.
  bundle="/tmp/gemlet-bundle-$target"
  "$qemu" "$bin" bundle -m "$TINY" -o "$bundle" >/dev/null
  c=$(printf 'hello world' | "$qemu" "$bundle" generate -p "hello world" -n 16 --temp 0 --json -t 2 | ids)
  [ "$c" = "$b" ] || fail "$target bundle ids $c differ from x86's $b"
  head -c -1000 "$bundle" > "$bundle.cut"; chmod +x "$bundle.cut"
  set +e
  msg=$("$qemu" "$bundle.cut" --temp 0 2>&1); rc=$?
  set -e
  [ "$rc" = 1 ] && [[ "$msg" == *"carries a model"* ]] || fail "$target cut bundle: exit $rc: $msg"
  rm -f "$bundle" "$bundle.cut"
  echo "bundle runs its model; cut short, it says so"
  # A prompt whose first 6 greedy steps all have a top-1/top-2 margin of at least 0.7 in
  # llama.cpp's run (tests/fixtures/gemma3-270m-greedy.jsonl, "chat"): the NEON kernels differ
  # from AVX's by far less than that.
  prompt=$'<start_of_turn>user\nWrite a short poem about autumn leaves.<end_of_turn>\n<start_of_turn>model\n'
  a=$("$qemu" "$bin" generate -m "$MODEL" -p "$prompt" -n 6 --temp 0 --json -t 2 | ids)
  b=$("$X86" generate -m "$MODEL" -p "$prompt" -n 6 --temp 0 --json -t 2 | ids)
  [ "$a" = "$b" ] || fail "$target real-model ids $a differ from x86's $b"
  [ "$a" = "[6974, 496, 2822, 27355, 1003, 16273]" ] || fail "$target real-model ids $a differ from llama.cpp's"
  echo "real model greedy ids equal to x86 and llama.cpp: $a"
  if [ -n "$old_cpu" ]; then
    set +e
    msg=$("$qemu" -cpu "$old_cpu" "$bin" --version 2>&1); rc=$?
    set -e
    echo "on -cpu $old_cpu: exit $rc: $msg"
    [ "$rc" = 1 ] && [[ "$msg" == *"this CPU does not have it"* ]] || fail "CPU check did not stop the run on $old_cpu"
  fi
done
echo "== ARM part done in $((SECONDS - start)) s"
