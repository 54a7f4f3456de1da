#!/usr/bin/env bash
# Re-create vendor/ggml from the llama-cpp-python sdist (a registry package), so that a ggml
# update is one command and one reviewable diff. Only the files build.rs compiles, and the headers
# they include (followed transitively), are copied, byte for byte.
#
# usage: scripts/vendor-ggml.sh [VERSION]   (default 0.3.36, which carries llama.cpp 0c1e570)
# env:   GGML_COMMIT  upstream llama.cpp commit the sdist carries (recorded in vendor/ggml/VERSION;
#                     the sdist has no git metadata, so it must be stated for a new version)
set -euo pipefail

PKG_VERSION="${1:-0.3.36}"
COMMIT="${GGML_COMMIT:-0c1e570}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/vendor/ggml"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gemlet/sdist"
SDIST="$CACHE/llama_cpp_python-$PKG_VERSION.tar.gz"

mkdir -p "$CACHE"
if [ ! -f "$SDIST" ]; then
  # --no-binary for this one package only: ':all:' would build cmake from source for metadata.
  python3 -m pip download --no-deps --no-binary llama-cpp-python -d "$CACHE" "llama-cpp-python==$PKG_VERSION"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$SDIST" -C "$tmp"
UP="$tmp/llama_cpp_python-$PKG_VERSION/vendor/llama.cpp"
G="$UP/ggml"
[ -d "$G/src/ggml-cpu" ] || { echo "no ggml CPU backend in $SDIST" >&2; exit 1; }

# The translation units build.rs compiles (keep in sync with build.rs `sources()`).
SOURCES=(
  src/ggml.c src/ggml-alloc.c src/ggml-quants.c
  src/ggml.cpp src/ggml-backend.cpp src/ggml-backend-meta.cpp src/ggml-backend-reg.cpp
  src/ggml-backend-dl.cpp src/ggml-threading.cpp
  src/ggml-cpu/ggml-cpu.c src/ggml-cpu/quants.c
  src/ggml-cpu/ggml-cpu.cpp src/ggml-cpu/repack.cpp src/ggml-cpu/hbm.cpp src/ggml-cpu/traits.cpp
  src/ggml-cpu/binary-ops.cpp src/ggml-cpu/unary-ops.cpp src/ggml-cpu/vec.cpp src/ggml-cpu/ops.cpp
  src/ggml-cpu/amx/amx.cpp src/ggml-cpu/amx/mmq.cpp
  src/ggml-cpu/tiled/tiled.cpp src/ggml-cpu/tiled/tiled-kernel.cpp
  src/ggml-cpu/llamafile/sgemm.cpp
  src/ggml-cpu/arch/x86/quants.c src/ggml-cpu/arch/x86/repack.cpp
  src/ggml-cpu/arch/arm/quants.c src/ggml-cpu/arch/arm/repack.cpp
)
# Public headers the bindings are generated from (bindgen/wrapper.h).
HEADERS=(include/ggml.h include/ggml-cpu.h include/ggml-backend.h include/ggml-alloc.h)

# Transitive closure of quoted #includes that resolve inside ggml (system headers are skipped;
# includes guarded for other backends simply do not resolve and are skipped too).
python3 - "$G" "${SOURCES[@]}" "${HEADERS[@]}" > "$tmp/files" <<'PY'
import os, re, sys
root, todo = sys.argv[1], list(sys.argv[2:])
inc_dirs = ["include", "src", "src/ggml-cpu"]
seen = set()
pat = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)
while todo:
    rel = os.path.normpath(todo.pop())
    if rel in seen:
        continue
    seen.add(rel)
    text = open(os.path.join(root, rel), encoding="utf-8", errors="replace").read()
    for name in pat.findall(text):
        for base in [os.path.dirname(rel)] + inc_dirs:
            cand = os.path.normpath(os.path.join(base, name))
            if os.path.isfile(os.path.join(root, cand)):
                todo.append(cand)
                break
print("\n".join(sorted(seen)))
PY

rm -rf "$DEST"
mkdir -p "$DEST"
while read -r f; do
  mkdir -p "$DEST/$(dirname "$f")"
  cp "$G/$f" "$DEST/$f"
done < "$tmp/files"
cp "$UP/LICENSE" "$DEST/LICENSE"

ver="$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)).*/\2/p' "$G/CMakeLists.txt" | paste -sd.)"
cat > "$DEST/VERSION" <<TXT
ggml $ver
llama.cpp commit $COMMIT
source: llama-cpp-python $PKG_VERSION sdist, vendor/llama.cpp/ggml (unmodified)
sdist sha256: $(sha256sum "$SDIST" | cut -d' ' -f1)
files: $(wc -l < "$tmp/files") (see scripts/vendor-ggml.sh)
TXT
echo "vendored $(wc -l < "$tmp/files") files of ggml $ver ($COMMIT) into $DEST"
