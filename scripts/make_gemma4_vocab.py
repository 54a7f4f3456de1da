#!/usr/bin/env python3
"""A vocabulary-only GGUF with the real Gemma 3 vocabulary as a Gemma 4 (BPE) tokenizer.

No real Gemma 4 vocabulary can be fetched here, so the test of gemlet's `gemma4` tokenizer uses
the Gemma 3 one, rewritten as Gemma 4's converter writes a vocabulary
(tokenizer.ggml.model = "gemma4", pre "gemma4", add_space_prefix false), with BPE merges
derived from it as the `tokenizers` library derives them from a SentencePiece model
(SentencePieceExtractor): for every normal piece, each split into two pieces of the vocabulary
is a merge, ranked by the piece's score, then by the two halves' ids. The architecture keys
are the tiny gemma4 fixture's (llama.cpp's loader reads them even for a vocabulary), with no
tensors.

Usage: make_gemma4_vocab.py SOURCE.gguf TINY_GEMMA4.gguf OUT.gguf
Needs the PyPI packages gguf (0.19.0) and numpy.
"""
import sys
import time

import gguf
from gguf import GGUFReader, GGUFValueType


def field_value(f):
    t = f.types[0]
    if t == GGUFValueType.ARRAY:
        et = f.types[1]
        if et == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", errors="surrogateescape") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    return f.parts[f.data[0]][0].item()


def main() -> int:
    src, tiny, out = sys.argv[1:4]
    t0 = time.time()
    r = GGUFReader(src)
    tokens = field_value(r.fields["tokenizer.ggml.tokens"])
    scores = field_value(r.fields["tokenizer.ggml.scores"])
    types = field_value(r.fields["tokenizer.ggml.token_type"])
    ids = {t: i for i, t in enumerate(tokens)}
    merges = []
    for i, t in enumerate(tokens):
        if types[i] != 1 or len(t) < 2:
            continue
        for k in range(1, len(t)):
            a, b = t[:k], t[k:]
            ia, ib = ids.get(a), ids.get(b)
            if ia is not None and ib is not None:
                merges.append((-scores[i], i, ia, ib, a, b))
    merges.sort()
    merge_strs = [f"{a} {b}" for *_, a, b in merges]
    print(f"{len(tokens)} tokens, {len(merge_strs)} merges in {time.time() - t0:.1f} s",
          file=sys.stderr)

    tr = GGUFReader(tiny)
    w = gguf.GGUFWriter(out, "gemma4")
    for name, f in tr.fields.items():
        if name.startswith(("tokenizer.", "GGUF.", "general.architecture")):
            continue
        v = field_value(f)
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(name, v, GGUFValueType.ARRAY, sub_type=f.types[1])
        else:
            w.add_key_value(name, v, f.types[0])
    w.add_tokenizer_model("gemma4")
    w.add_tokenizer_pre("gemma4")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_token_merges(merge_strs)
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"):
        f = r.fields.get(f"tokenizer.ggml.{key}")
        if f is not None:
            w.add_key_value(f"tokenizer.ggml.{key}", field_value(f), f.types[0])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out} in {time.time() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
