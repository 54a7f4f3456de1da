#!/usr/bin/env python3
"""Counts of a GGUF file as the reference reader (the `gguf` PyPI package, llama.cpp's gguf-py)
sees them: tensor table, parameter count, bytes by type, selected metadata. The output is the
fixture tests/fixtures/gemma3-270m.gguf-py.json that gemlet's own reader is compared with.

usage: python3 scripts/gguf-py-census.py MODEL.gguf > tests/fixtures/NAME.gguf-py.json
needs: pip install gguf==0.19.0 numpy
"""
import json
import sys

from gguf import GGUFReader

path = sys.argv[1]
r = GGUFReader(path)
tensors = []
bytes_by_type = {}
params = 0
for t in r.tensors:
    # gguf-py reports shape in ggml order (ne0 first), like the tensor table.
    shape = [int(d) for d in t.shape]
    n = 1
    for d in shape:
        n *= d
    params += n
    ty = t.tensor_type.name.lower().replace("_k", "_K")
    bytes_by_type[ty] = bytes_by_type.get(ty, 0) + int(t.n_bytes)
    tensors.append({
        "name": t.name,
        "shape": shape,
        "type": ty,
        "offset": int(t.data_offset) - int(r.data_offset),
        "n_bytes": int(t.n_bytes),
    })

def field(name):
    f = r.fields.get(name)
    return None if f is None else f.contents()

keys = ["general.architecture", "general.name", "general.file_type", "general.alignment",
        "gemma3.block_count", "gemma3.embedding_length", "gemma3.context_length",
        "gemma3.rope.freq_base", "gemma3.attention.sliding_window"]
out = {
    "gguf_py_version": __import__("importlib.metadata").metadata.version("gguf"),
    "version": int(r.fields["GGUF.version"].contents()),
    "key_count": len([k for k in r.fields if not k.startswith("GGUF.")]),
    "data_offset": int(r.data_offset),
    "tensor_count": len(r.tensors),
    "parameter_count": params,
    "bytes_by_type": bytes_by_type,
    "metadata": {k: field(k) for k in keys},
    "tokens": {"count": len(field("tokenizer.ggml.tokens")), "first": field("tokenizer.ggml.tokens")[:5]},
    "tensors": tensors,
}
json.dump(out, sys.stdout, indent=1)
print()
