#!/usr/bin/env bash
# Cross-build a fully static gemlet for an ARM Linux board on a Debian 12 x86-64 machine, with
# apt packages only (rustup cannot fetch target standard libraries here: Debian's rust-web-src
# plus -Zbuild-std builds std for the target instead).
#
# usage: scripts/cross-build.sh TARGET [CPU-LEVEL]
#   TARGET     aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf
#   CPU-LEVEL  GEMLET_CPU for ggml (see README): aarch64 armv8-a (default: Pi 3/4) or
#              armv8.2-a+dotprod+fp16 (Pi 5, RK3588); armv7 neon-vfpv4 (default) or vfpv3-d16
# writes $CARGO_TARGET_DIR/TARGET/release/gemlet (default CARGO_TARGET_DIR: target), and prints
# its size and linkage.
# env QEMU_TEST=1: also run `gemlet --version` under qemu-user (static binary: no sysroot needed)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${1:?usage: scripts/cross-build.sh TARGET [CPU-LEVEL]}"
LEVEL="${2:-}"
export DEBIAN_FRONTEND=noninteractive

case "$TARGET" in
  aarch64-unknown-linux-gnu)     GNU=aarch64-linux-gnu;   QEMU=qemu-aarch64; DEFAULT_LEVEL=armv8-a ;;
  armv7-unknown-linux-gnueabihf) GNU=arm-linux-gnueabihf; QEMU=qemu-arm;     DEFAULT_LEVEL=neon-vfpv4 ;;
  *) echo "unsupported target $TARGET (aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
esac
LEVEL="${LEVEL:-$DEFAULT_LEVEL}"

# Debian's Rust 1.96 (rustc-web) with its source (rust-web-src), the cross compilers, and qemu.
need=()
command -v "$GNU-gcc" >/dev/null || need+=("gcc-$GNU")
command -v "$GNU-g++" >/dev/null || need+=("g++-$GNU")
command -v "$QEMU" >/dev/null || need+=(qemu-user)
[ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] || need+=(rustc-web cargo-web)
[ -d /usr/lib/rustlib/src/rust/library ] || need+=(rust-web-src)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# rustup's proxies shadow /usr/bin on PATH: name Debian's tools, or cargo picks rustup's rustc,
# which has no std for the target.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export RUSTC_BOOTSTRAP=1   # -Zbuild-std on a stable compiler
TU=$(echo "$TARGET" | tr 'a-z-' 'A-Z_')
export "CARGO_TARGET_${TU}_LINKER=$GNU-gcc"
export "CARGO_TARGET_${TU}_RUNNER=$QEMU"
export "CC_${TARGET//-/_}=$GNU-gcc" "CXX_${TARGET//-/_}=$GNU-g++" "AR_${TARGET//-/_}=$GNU-ar"
# Fully static: nothing to install on the board, and qemu needs no sysroot.
export RUSTFLAGS="-C target-feature=+crt-static"
export GEMLET_CPU="$LEVEL"

/usr/bin/cargo build -Zbuild-std=std,panic_unwind --release --target "$TARGET" ${CARGO_JOBS:+-j "$CARGO_JOBS"}
BIN="${CARGO_TARGET_DIR:-target}/$TARGET/release/gemlet"
echo "== $BIN ($LEVEL): $(stat -c %s "$BIN") bytes"
file "$BIN" 2>/dev/null || true
"$GNU-readelf" -d "$BIN" | head -5
if [ "${QEMU_TEST:-0}" = 1 ]; then
  "$QEMU" "$BIN" --version
fi
