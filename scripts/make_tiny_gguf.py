#!/usr/bin/env python3
"""Tiny random-weight Gemma-family GGUF models (gemma, gemma2, gemma3, gemma4).

Ported from ../shared/tools/make_tiny_gguf.py, which made tests/fixtures/tiny/ (the
gemma/gemma2/gemma3 files this script still writes byte for byte), and extended with the
gemma4 configs below.

Deterministic: every weight comes from numpy's legacy RandomState (whose
stream numpy keeps stable across versions) seeded from a hash of the tensor
name and the config's seed, so the f32/f16/q8_0/q4_0 files of one config hold
the same model at different precisions.  The files are laid out as llama.cpp's
converter lays out real Gemma GGUFs (same keys, tensor names, Gemma norm
weights stored as 1 + w), but the sizes are tiny and some hyper-parameters are
chosen to make bugs visible (see CONFIGS).

Usage:
    python3 make_tiny_gguf.py --outdir DIR            # every model
    python3 make_tiny_gguf.py --outdir DIR --only tiny-gemma2-q8_0
    python3 make_tiny_gguf.py --list

Needs the PyPI packages `gguf` (tested with 0.19.0) and `numpy`.

Models (name = tiny-<config>-<variant>):
  config    arch    L  E    H  KV Dh  F    V    notes
  gemma     gemma   2  128  4  1  32  256  512  MQA, H*Dh == E (like gemma-2b)
  gemma2    gemma2  4  96   4  2  32  192  512  GQA, H*Dh != E; layers 0,2 local
  gemma3    gemma3  7  64   4  1  32  192  512  MQA, H*Dh != E; layers 0-4,6 local
  gemma-k   gemma   2  256  8  1  32  512  512  K-quant shapes (all ne0 % 256 == 0)
  gemma2-k  gemma2  4  256  8  2  32  512  512  "
  gemma3-k  gemma3  7  256  8  1  32  256  512  "
  gemma4    gemma4  6  64   4  1  32/16 128/256  512  see below
  gemma4-k  gemma4  4  256  4  1  64/32 256/512  512  K-quant shapes (Q8_0 where a row is
                                                      not whole 256-blocks, as llama-quantize)

gemma4 (llama.cpp's src/models/gemma4.cpp), chosen so that every piece shows (the -k
config's figures in brackets): layers 0,1,2,4 [0,2] sliding-window (window 8), the others
global; global heads 32 [64] wide, local ones 16 [32]; rope base 1e6 on global layers with
rope_freqs (proportional rope: the last quarter of the frequencies switched off by a factor
of 1e30, the others divided by 1..2), 10000 (freq_base_swa) on local ones; the last 2 layers
reuse the KV cache of the last local and the last global layer before them (llama.cpp's
rule) and have no attn_k/attn_v/attn_k_norm of their own, with a feed-forward twice as wide
(Gemma 4's double-wide MLP); layer 1 has no attn_v (V = K); V is RMS-normed without a
weight; attention scale 1.0; per-layer embeddings (PLE) of 32 [128] per layer;
layer_output_scale on every layer; final soft-cap 5.
gemma4-moe [gemma4-moe-k]: Gemma 4's 26B-A4B shape in small: 4 [2] layers, local ones with
2 KV heads and global ones with 1 (head_count_kv as an array), no per-layer embeddings;
every layer has 4 experts of inner size 32 [256], top-2, beside its dense MLP (router F32,
as llama-quantize keeps it, with its per-channel scale; per-expert down scales); layer 0
has a fused attn_qkv, layers 0-1 [0] a fused ffn_gate_up_exps, layer 2 per-expert gate/up
scales too, the last global layer no attn_v.
  variants: f32 / f16 / q8_0 / q4_0 for gemma, gemma2, gemma3, gemma4 (every 2-D
  matrix, token_embd included, in that type; 1-D norms always F32);
  q4_k_m for the -k configs (Q4_K, with Q6_K for token_embd and for attn_v /
  ffn_down where llama-quantize's use_more_bits(i, L) holds).  The -k configs
  exist because K-quants need every row length to be a multiple of 256; the
  small configs' rows (64..256) are not.

Metadata: general.architecture, general.type, general.name,
general.description, general.file_type, general.quantization_version;
<arch>.context_length (128), embedding_length, block_count,
feed_forward_length, attention.head_count, attention.head_count_kv,
attention.layer_norm_rms_epsilon (1e-6), attention.key_length,
attention.value_length; gemma2: attn_logit_softcapping, final_logit_softcapping,
attention.sliding_window; gemma3: rope.freq_base (1e6), attention.sliding_window.
gemma and gemma2 carry no rope.freq_base (like converted files; llama.cpp uses
10000), gemma3 carries no rope.freq_base_swa (llama.cpp uses 10000 for the
local layers).  sliding_window = 8 so that a 32-token prompt crosses it.
Softcaps are much smaller than gemma-2's real 50/30 (attn 10, final 5) so that
they change the logits measurably.

Weights: token_embd ~ N(0, 1/sqrt(E)) (after Gemma's sqrt(E) input scaling
the embeddings are ~N(0,1)); projection matrices ~ N(0, 1/sqrt(fan_in)), with
attn_q/attn_k x1.5 so attention is peaky; every norm weight is stored as
1 + N(0, 0.1) because llama.cpp's converter adds 1 to Gemma RMSNorm weights
(Gemma computes x * (1 + w)) and llama.cpp's graph multiplies by the stored
value.

Vocabulary (SentencePiece, tokenizer.ggml.model = "llama", 512 tokens):
  0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>, 4 <start_of_turn>, 5 <end_of_turn>
  (all token_type CONTROL, as real Gemma GGUFs have them), 6..261 byte
  tokens <0x00>..<0xFF>,
  262.. single characters (▁, a-z, 0-9, punctuation), then common words
  with all their ▁-prefixed prefixes (▁h ▁he ▁hel ▁hell ▁hello) so SPM merges
  reach whole words, scores decreasing with the id; uppercase letters and
  anything else fall back to byte tokens.  bos=2 eos=1 unk=3 pad=0, add_bos_token=true,
  add_eos_token=false, add_space_prefix=false (as the Gemma converter writes).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import LlamaFileType as FT

QK_K = 256


@dataclass(frozen=True)
class TinyConfig:
    name: str
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int = 512
    n_ctx: int = 128
    seed: int = 1234
    rope_base: float | None = None
    sliding_window: int | None = None
    attn_softcap: float | None = None
    final_softcap: float | None = None
    variants: tuple[str, ...] = ("f32", "f16", "q8_0", "q4_0")
    # gemma4
    head_dim_swa: int | None = None
    n_ff_layers: tuple[int, ...] | None = None
    swa_pattern: tuple[bool, ...] | None = None
    rope_base_swa: float | None = None
    shared_kv_layers: int = 0
    n_embd_per_layer: int = 0
    no_v_layers: tuple[int, ...] = ()
    n_head_kv_swa: int | None = None       # head_count_kv as a per-layer array
    fused_qkv_layers: tuple[int, ...] = ()  # attn_qkv instead of attn_q/k/v
    # mixture of experts (every layer): experts, used per token, expert inner size
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0
    fused_gate_up_layers: tuple[int, ...] = ()  # ffn_gate_up_exps instead of gate/up
    scaled_gate_up_layers: tuple[int, ...] = ()  # ffn_{gate,up}_exps.scale as well
    # gemma-embedding: pooling type (1 mean, 2 cls, 3 last), dense_2/dense_3 inner width
    # (0: none), EOS appended to every text
    pooling: int = 0
    n_dense: int = 0
    add_eos: bool = False
    # gemma3n: AltUp streams, LAuReL rank, layers with activation sparsity (llama.cpp
    # 0c1e570 hard-codes 4 streams, rank 64, a per-layer width of 256 and sparsity on the
    # first 10 layers: the files must agree with it)
    n_altup: int = 0
    laurel_rank: int = 0
    n_sparse: int = 0

    def is_swa(self, il: int) -> bool:
        return bool(self.swa_pattern and self.swa_pattern[il])

    def head_dim_of(self, il: int) -> int:
        return self.head_dim_swa if self.is_swa(il) and self.head_dim_swa else self.head_dim

    def n_ff_of(self, il: int) -> int:
        return self.n_ff_layers[il] if self.n_ff_layers else self.n_ff

    def n_head_kv_of(self, il: int) -> int:
        return self.n_head_kv_swa if self.is_swa(il) and self.n_head_kv_swa else self.n_head_kv

    def has_kv(self, il: int) -> bool:
        return il < self.n_layer - self.shared_kv_layers


CONFIGS = {c.name: c for c in [
    TinyConfig("gemma", "gemma", 2, 128, 4, 1, 32, 256, seed=101),
    TinyConfig("gemma2", "gemma2", 4, 96, 4, 2, 32, 192, seed=202,
               sliding_window=8, attn_softcap=10.0, final_softcap=5.0),
    TinyConfig("gemma3", "gemma3", 7, 64, 4, 1, 32, 192, seed=303,
               rope_base=1_000_000.0, sliding_window=8),
    TinyConfig("gemma-k", "gemma", 2, 256, 8, 1, 32, 512, seed=404,
               variants=("q4_k_m",)),
    TinyConfig("gemma2-k", "gemma2", 4, 256, 8, 2, 32, 512, seed=505,
               sliding_window=8, attn_softcap=10.0, final_softcap=5.0,
               variants=("q4_k_m",)),
    TinyConfig("gemma3-k", "gemma3", 7, 256, 8, 1, 32, 256, seed=606,
               rope_base=1_000_000.0, sliding_window=8, variants=("q4_k_m",)),
    TinyConfig("gemma4", "gemma4", 6, 64, 4, 1, 32, 128, seed=707,
               rope_base=1_000_000.0, rope_base_swa=10_000.0, sliding_window=8,
               final_softcap=5.0, head_dim_swa=16, n_ff_layers=(128,) * 4 + (256,) * 2,
               swa_pattern=(True, True, True, False, True, False), shared_kv_layers=2,
               n_embd_per_layer=32, no_v_layers=(1,)),
    TinyConfig("gemma4-k", "gemma4", 4, 256, 4, 1, 64, 256, seed=808,
               rope_base=1_000_000.0, rope_base_swa=10_000.0, sliding_window=8,
               final_softcap=5.0, head_dim_swa=32, n_ff_layers=(256,) * 2 + (512,) * 2,
               swa_pattern=(True, False, True, False), shared_kv_layers=2,
               n_embd_per_layer=128, no_v_layers=(1,), variants=("q4_k_m",)),
    TinyConfig("gemma4-moe", "gemma4", 4, 64, 4, 1, 32, 96, seed=909,
               rope_base=1_000_000.0, rope_base_swa=10_000.0, sliding_window=8,
               final_softcap=5.0, head_dim_swa=16, swa_pattern=(True, False, True, False),
               n_head_kv_swa=2, no_v_layers=(3,), fused_qkv_layers=(0,),
               n_expert=4, n_expert_used=2, n_ff_exp=32, fused_gate_up_layers=(0, 1),
               scaled_gate_up_layers=(2,)),
    TinyConfig("gemma4-moe-k", "gemma4", 2, 256, 4, 1, 64, 256, seed=1010,
               rope_base=1_000_000.0, rope_base_swa=10_000.0, sliding_window=8,
               final_softcap=5.0, head_dim_swa=32, swa_pattern=(True, False),
               n_head_kv_swa=2, no_v_layers=(1,), fused_qkv_layers=(0,),
               n_expert=4, n_expert_used=2, n_ff_exp=256, fused_gate_up_layers=(0,),
               variants=("q4_k_m",)),
    TinyConfig("gemma3n", "gemma3n", 22, 64, 4, 1, 32, 128, seed=1313,
               rope_base=1_000_000.0, rope_base_swa=10_000.0, sliding_window=8,
               final_softcap=30.0, swa_pattern=tuple(il % 5 < 4 and il != 21 for il in range(22)),
               shared_kv_layers=2, n_embd_per_layer=256, n_altup=4, laurel_rank=64,
               n_sparse=10),
    TinyConfig("gemma3n-k", "gemma3n", 22, 256, 4, 1, 64, 256, seed=1414,
               rope_base=1_000_000.0, rope_base_swa=10_000.0, sliding_window=8,
               final_softcap=30.0, swa_pattern=tuple(il % 5 < 4 and il != 21 for il in range(22)),
               shared_kv_layers=2, n_embd_per_layer=256, n_altup=4, laurel_rank=64,
               n_sparse=10, variants=("q4_k_m",)),
    TinyConfig("gemma-embedding", "gemma-embedding", 5, 64, 4, 1, 32, 192, seed=1111,
               rope_base=1_000_000.0, sliding_window=8, pooling=1, n_dense=96,
               add_eos=True, swa_pattern=(True, True, False, True, True)),
    TinyConfig("gemma-embedding-k", "gemma-embedding", 3, 256, 4, 1, 64, 256, seed=1212,
               rope_base=1_000_000.0, sliding_window=8, pooling=3, n_dense=512,
               add_eos=True, swa_pattern=(True, False, True), variants=("q4_k_m",)),
]}

FILE_TYPE = {"f32": FT.ALL_F32, "f16": FT.MOSTLY_F16, "q8_0": FT.MOSTLY_Q8_0,
             "q4_0": FT.MOSTLY_Q4_0, "q4_k_m": FT.MOSTLY_Q4_K_M}

BLOCK_TENSORS = {
    "gemma": ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
              "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"],
    "gemma2": ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
               "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up",
               "ffn_down", "post_ffw_norm"],
    "gemma3": ["attn_norm", "attn_q", "attn_q_norm", "attn_k", "attn_k_norm",
               "attn_v", "attn_output", "post_attention_norm", "ffn_norm",
               "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"],
    "gemma-embedding": ["attn_norm", "attn_q", "attn_q_norm", "attn_k", "attn_k_norm",
                        "attn_v", "attn_output", "post_attention_norm", "ffn_norm",
                        "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"],
    "gemma4": ["attn_norm", "attn_q", "attn_q_norm", "attn_k", "attn_k_norm",
               "attn_v", "attn_output", "post_attention_norm", "ffn_norm",
               "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm", "layer_output_scale",
               "inp_gate", "proj", "post_norm"],
}

# ------------------------------------------------------------------ vocab

_WORDS = """hello world gemma user model start end turn Hello World The Gemma
the of and to in is it you that he was for on are with as his they be at
one have this from or had by hot but some what there we can out other were all your
when up use word how said an each she which do their time if will way about many
then them would write like so these her long make thing see him two has look more
day could go come did my sound no most number who over know water than call first
people may down side been now find any new work part take get place made live where
after back little only round man year came show every good me give our under name
very through just form much great think say help low line before cause same""".split()


def tiny_vocab(n_vocab: int = 512):
    """SentencePiece-style vocabulary: specials, 256 byte tokens, characters,
    then whole words with every prefix ("\u2581w", "\u2581wo", ... "\u2581world")
    so that llama.cpp's SPM merges can reach each word."""
    TT = gguf.TokenType
    toks = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    # all CONTROL, <unk> included, as real Gemma GGUFs mark them
    types = [TT.CONTROL] * 6
    scores = [0.0] * 6
    for b in range(256):
        toks.append(f"<0x{b:02X}>"); types.append(TT.BYTE); scores.append(0.0)
    budget = n_vocab - len(toks)
    normal: list[str] = ["\u2581"] + list("abcdefghijklmnopqrstuvwxyz")
    normal += list("0123456789") + list(".,!?'-:;()")
    seen = set(normal)
    for w in _WORDS:
        chain = ["\u2581" + w[:k] for k in range(1, len(w) + 1)]
        missing = [p for p in chain if p not in seen]
        if len(normal) + len(missing) > budget:
            continue
        for p in missing:
            seen.add(p); normal.append(p)
    i = 0
    while len(normal) < budget:  # fill with unused pieces (never reached by merges)
        p = f"<unused{i}>"
        i += 1
        if p not in seen:
            seen.add(p); normal.append(p)
    for i, p in enumerate(normal):
        toks.append(p)
        types.append(TT.UNUSED if p.startswith("<unused") else TT.NORMAL)
        scores.append(-float(i) / 10.0)
    assert len(set(toks)) == len(toks) == n_vocab
    return toks, scores, [int(t) for t in types]


# ------------------------------------------------------------------ weights

def _rng(c: TinyConfig, name: str) -> np.random.RandomState:
    h = hashlib.sha256(f"{c.seed}:{name}".encode()).digest()
    return np.random.RandomState(int.from_bytes(h[:4], "little"))


def tensor_specs(c: TinyConfig):
    """(name, numpy shape (rows=ne1, cols=ne0), std or None for a norm, or a callable
    giving the values)."""
    if c.arch == "gemma4":
        return gemma4_specs(c)
    if c.arch == "gemma3n":
        return gemma3n_specs(c)
    E, F, q, kv = c.n_embd, c.n_ff, c.n_head * c.head_dim, c.n_head_kv * c.head_dim
    specs = [("token_embd.weight", (c.n_vocab, E), 1.0 / np.sqrt(E)),
             ("output_norm.weight", (E,), None)]
    shapes = {
        "attn_norm": ((E,), None), "ffn_norm": ((E,), None),
        "post_attention_norm": ((E,), None), "post_ffw_norm": ((E,), None),
        "attn_q_norm": ((c.head_dim,), None), "attn_k_norm": ((c.head_dim,), None),
        "attn_q": ((q, E), 1.5 / np.sqrt(E)), "attn_k": ((kv, E), 1.5 / np.sqrt(E)),
        "attn_v": ((kv, E), 1.0 / np.sqrt(E)), "attn_output": ((E, q), 1.0 / np.sqrt(q)),
        "ffn_gate": ((F, E), 1.0 / np.sqrt(E)), "ffn_up": ((F, E), 1.0 / np.sqrt(E)),
        "ffn_down": ((E, F), 1.0 / np.sqrt(F)),
    }
    for il in range(c.n_layer):
        for short in BLOCK_TENSORS[c.arch]:
            shp, std = shapes[short]
            specs.append((f"blk.{il}.{short}.weight", shp, std))
    if c.n_dense:  # sentence-transformers' two dense projections, E -> n_dense -> E
        specs += [("dense_2.weight", (c.n_dense, E), 1.0 / np.sqrt(E)),
                  ("dense_3.weight", (E, c.n_dense), 1.0 / np.sqrt(c.n_dense))]
    return specs


def rope_freqs(c: TinyConfig, r: np.random.RandomState) -> np.ndarray:
    """Proportional rope's frequency factors of the global layers: the last quarter of the
    head's frequencies off (a factor of 1e30 leaves them unrotated), the rest divided by
    1..2."""
    n = c.head_dim // 2
    f = (1.0 + r.random_sample(n)).astype(np.float32)
    f[3 * n // 4:] = 1e30
    return f


def gemma4_specs(c: TinyConfig):
    E, P, L = c.n_embd, c.n_embd_per_layer, c.n_layer
    specs = [("token_embd.weight", (c.n_vocab, E), 1.0 / np.sqrt(E)),
             ("per_layer_token_embd.weight", (c.n_vocab, P * L), 1.0 / np.sqrt(P)),
             ("per_layer_model_proj.weight", (P * L, E), 1.0 / np.sqrt(E)),
             ("per_layer_proj_norm.weight", (P,), None),
             ("rope_freqs.weight", (c.head_dim // 2,), lambda r: rope_freqs(c, r)),
             ("output_norm.weight", (E,), None)]
    if not P:
        specs = [sp for sp in specs if not sp[0].startswith("per_layer_")]
    for il in range(L):
        D, F = c.head_dim_of(il), c.n_ff_of(il)
        q, kv = c.n_head * D, c.n_head_kv_of(il) * D
        shapes = {
            "attn_norm": ((E,), None), "ffn_norm": ((E,), None),
            "post_attention_norm": ((E,), None), "post_ffw_norm": ((E,), None),
            "attn_q_norm": ((D,), None), "attn_k_norm": ((D,), None),
            "attn_q": ((q, E), 1.5 / np.sqrt(E)), "attn_k": ((kv, E), 1.5 / np.sqrt(E)),
            "attn_v": ((kv, E), 1.0 / np.sqrt(E)), "attn_output": ((E, q), 1.0 / np.sqrt(q)),
            "ffn_gate": ((F, E), 1.0 / np.sqrt(E)), "ffn_up": ((F, E), 1.0 / np.sqrt(E)),
            "ffn_down": ((E, F), 1.0 / np.sqrt(F)),
            "layer_output_scale": ((1,), lambda r: (0.5 + r.random_sample(1)).astype(np.float32)),
            "inp_gate": ((P, E), 1.0 / np.sqrt(E)), "proj": ((E, P), 1.0 / np.sqrt(P)),
            "post_norm": ((E,), None),
        }
        for short in BLOCK_TENSORS[c.arch]:
            if short in ("attn_k", "attn_k_norm", "attn_v") and not c.has_kv(il):
                continue
            if short == "attn_v" and il in c.no_v_layers and il not in c.fused_qkv_layers:
                continue
            if short in ("attn_q", "attn_k", "attn_v") and il in c.fused_qkv_layers:
                continue
            if short in ("inp_gate", "proj", "post_norm") and not P:
                continue
            shp, std = shapes[short]
            specs.append((f"blk.{il}.{short}.weight", shp, std))
        if il in c.fused_qkv_layers:  # rows: queries, keys, values (llama.cpp's split)
            specs.append((f"blk.{il}.attn_qkv.weight", (q + 2 * kv, E),
                          lambda r, q=q, kv=kv: fused_qkv(r, q, kv, E)))
        if c.n_expert:
            specs += expert_specs(c, il)
    return specs


def gemma3n_specs(c: TinyConfig):
    """llama.cpp's src/models/gemma3n.cpp tensors. Every layer has its K/V projections (the
    converter writes them; the KV-sharing layers do not use theirs). AltUp coefficients are
    small, as trained ones are, so that the four streams stay close."""
    E, P, L, N, R = c.n_embd, c.n_embd_per_layer, c.n_layer, c.n_altup, c.laurel_rank
    q, kv, F = c.n_head * c.head_dim, c.n_head_kv * c.head_dim, c.n_ff
    specs = [("token_embd.weight", (c.n_vocab, E), 1.0 / np.sqrt(E)),
             ("per_layer_token_embd.weight", (c.n_vocab, P * L), 1.0 / np.sqrt(P)),
             ("per_layer_model_proj.weight", (P * L, E), 1.0 / np.sqrt(E)),
             ("per_layer_proj_norm.weight", (P,), None),
             ("altup_proj.weight", (N - 1, E, E), 1.0 / np.sqrt(E)),
             ("altup_unembd_proj.weight", (N - 1, E, E), 1.0 / np.sqrt(E)),
             ("output_norm.weight", (E,), None)]
    for il in range(L):
        b = f"blk.{il}"
        specs += [
            (f"{b}.attn_norm.weight", (E,), None),
            (f"{b}.attn_q.weight", (q, E), 1.5 / np.sqrt(E)),
            (f"{b}.attn_k.weight", (kv, E), 1.5 / np.sqrt(E)),
            (f"{b}.attn_v.weight", (kv, E), 1.0 / np.sqrt(E)),
            (f"{b}.attn_output.weight", (E, q), 1.0 / np.sqrt(q)),
            (f"{b}.attn_q_norm.weight", (c.head_dim,), None),
            (f"{b}.attn_k_norm.weight", (c.head_dim,), None),
            (f"{b}.post_attention_norm.weight", (E,), None),
            (f"{b}.ffn_norm.weight", (E,), None),
            (f"{b}.ffn_gate.weight", (F, E), 1.0 / np.sqrt(E)),
            (f"{b}.ffn_up.weight", (F, E), 1.0 / np.sqrt(E)),
            (f"{b}.ffn_down.weight", (E, F), 1.0 / np.sqrt(F)),
            (f"{b}.post_ffw_norm.weight", (E,), None),
            (f"{b}.inp_gate.weight", (P, E), 1.0 / np.sqrt(E)),
            (f"{b}.proj.weight", (E, P), 1.0 / np.sqrt(P)),
            (f"{b}.post_norm.weight", (E,), None),
            (f"{b}.altup_correct_coef.weight", (N, N), 0.1),
            (f"{b}.altup_correct_scale.weight", (E,), None),
            (f"{b}.altup_predict_coef.weight", (N * N, N), 0.1),
            (f"{b}.altup_router.weight", (N, E), 1.0 / np.sqrt(E)),
            (f"{b}.altup_router_norm.weight", (E,), None),
            (f"{b}.laurel_l.weight", (R, E), 1.0 / np.sqrt(E)),
            (f"{b}.laurel_r.weight", (E, R), 1.0 / np.sqrt(R)),
            (f"{b}.laurel_post_norm.weight", (E,), None),
        ]
    return specs


def fused_qkv(r: np.random.RandomState, q: int, kv: int, E: int) -> np.ndarray:
    w = r.standard_normal((q + 2 * kv, E)) / np.sqrt(E)
    w[:q + kv] *= 1.5  # queries and keys peaky, as the separate matrices
    return w.astype(np.float32)


def expert_specs(c: TinyConfig, il: int):
    """Layer il's router (F32, as llama-quantize keeps it), the norms around the experts and
    the dense MLP beside them, and the expert matrices (numpy shape: experts, rows, cols)."""
    E, X, N = c.n_embd, c.n_ff_exp, c.n_expert
    b = f"blk.{il}"
    scale = lambda r: (0.5 + r.random_sample(N)).astype(np.float32)  # noqa: E731
    specs = [(f"{b}.ffn_gate_inp.weight", (N, E), 2.0 / np.sqrt(E)),
             (f"{b}.ffn_gate_inp.scale", (E,), None),
             (f"{b}.pre_ffw_norm_2.weight", (E,), None),
             (f"{b}.post_ffw_norm_1.weight", (E,), None),
             (f"{b}.post_ffw_norm_2.weight", (E,), None)]
    if il in c.fused_gate_up_layers:
        specs.append((f"{b}.ffn_gate_up_exps.weight", (N, 2 * X, E), 1.0 / np.sqrt(E)))
    else:
        specs += [(f"{b}.ffn_gate_exps.weight", (N, X, E), 1.0 / np.sqrt(E)),
                  (f"{b}.ffn_up_exps.weight", (N, X, E), 1.0 / np.sqrt(E))]
        if il in c.scaled_gate_up_layers:
            specs += [(f"{b}.ffn_gate_exps.scale", (N,), scale),
                      (f"{b}.ffn_up_exps.scale", (N,), scale)]
    specs += [(f"{b}.ffn_down_exps.weight", (N, E, X), 1.0 / np.sqrt(X)),
              (f"{b}.ffn_down_exps.scale", (N,), scale)]
    return specs


def make_weight(c: TinyConfig, name: str, shape, std) -> np.ndarray:
    r = _rng(c, name)
    if callable(std):
        return std(r)
    if std is None:  # Gemma RMSNorm weight w, stored as 1 + w (converter adds 1)
        return (1.0 + 0.1 * r.standard_normal(shape)).astype(np.float32)
    return (std * r.standard_normal(shape)).astype(np.float32)


# ------------------------------------------------------------------ K-quants
# Simple min/max quantizers producing valid ggml block_q4_K / block_q6_K bytes
# (layouts from ggml-common.h).  They are NOT ggml's make_qkx2_quants /
# make_qx_quants searches, so bytes differ from llama-quantize's, but the
# values llama.cpp dequantizes are the ones these bytes encode.

def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    rows = x.reshape(-1, QK_K).astype(np.float32)
    nb = rows.shape[0]
    sub = rows.reshape(nb, 8, 32)
    mn = np.minimum(sub.min(axis=-1), 0.0)
    mx = sub.max(axis=-1)
    scale = (mx - mn) / 15.0
    mins = -mn
    d = (scale.max(axis=-1) / 63.0).astype(np.float16)
    dmin = (mins.max(axis=-1) / 63.0).astype(np.float16)
    df = d.astype(np.float32)[:, None]
    dmf = dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.ceil(scale / df), 0).clip(0, 63).astype(np.uint8)
        m = np.where(dmf > 0, np.ceil(mins / dmf), 0).clip(0, 63).astype(np.uint8)
        es = (df * sc)[..., None]
        em = (dmf * m)[..., None]
        q = np.where(es > 0, np.rint((sub + em) / es), 0).clip(0, 15).astype(np.uint8)
    scales = np.zeros((nb, 12), dtype=np.uint8)
    for j in range(4):
        scales[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        scales[:, j + 4] = (m[:, j] & 63) | ((m[:, j + 4] >> 4) << 6)
        scales[:, j + 8] = (sc[:, j + 4] & 0xF) | ((m[:, j + 4] & 0xF) << 4)
    qs = np.zeros((nb, 128), dtype=np.uint8)
    for p in range(4):  # pairs of sub-blocks: low nibble 2p, high nibble 2p+1
        qs[:, p * 32:(p + 1) * 32] = q[:, 2 * p] | (q[:, 2 * p + 1] << 4)
    out = np.concatenate([d.view(np.uint8).reshape(nb, 2),
                          dmin.view(np.uint8).reshape(nb, 2), scales, qs], axis=1)
    assert out.shape[1] == 144
    return out


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    rows = x.reshape(-1, QK_K).astype(np.float32)
    nb = rows.shape[0]
    sub = rows.reshape(nb, 16, 16)
    amax = np.abs(sub).max(axis=-1)
    scale = amax / 31.0
    d = (scale.max(axis=-1) / 127.0).astype(np.float16)
    df = d.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df > 0, np.ceil(scale / df), 0).clip(0, 127).astype(np.int8)
        es = (df * sc.astype(np.float32))[..., None]
        q = np.where(es > 0, np.rint(sub / es), 0).clip(-32, 31)
    q = (q + 32).astype(np.uint8).reshape(nb, QK_K)
    ql = np.zeros((nb, 128), dtype=np.uint8)
    qh = np.zeros((nb, 64), dtype=np.uint8)
    for n in range(2):
        b = q[:, n * 128:(n + 1) * 128]
        q1, q2, q3, q4 = b[:, 0:32], b[:, 32:64], b[:, 64:96], b[:, 96:128]
        ql[:, n * 64:n * 64 + 32] = (q1 & 0xF) | ((q3 & 0xF) << 4)
        ql[:, n * 64 + 32:n * 64 + 64] = (q2 & 0xF) | ((q4 & 0xF) << 4)
        qh[:, n * 32:(n + 1) * 32] = ((q1 >> 4) | ((q2 >> 4) << 2)
                                      | ((q3 >> 4) << 4) | ((q4 >> 4) << 6))
    out = np.concatenate([ql, qh, sc.view(np.uint8), d.view(np.uint8).reshape(nb, 2)],
                         axis=1)
    assert out.shape[1] == 210
    return out


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    a = n_layers // 8
    return i_layer < a or i_layer >= 7 * n_layers // 8 or (i_layer - a) % 3 == 2


def pick_type(c: TinyConfig, variant: str, name: str, ndim: int, shape=None) -> QT:
    if ndim == 1 or name.endswith(".ffn_gate_inp.weight"):  # llama-quantize keeps routers
        return QT.F32
    if name.endswith(("altup_correct_coef.weight", "altup_predict_coef.weight")):
        return QT.F32  # rows of 4: no block type fits them
    if variant == "q4_k_m":
        if shape is not None and shape[-1] % QK_K != 0:  # llama-quantize falls back too
            return QT.Q8_0
        if name == "token_embd.weight":  # tied output -> Q6_K in Q4_K_M files
            return QT.Q6_K
        if name.endswith((".attn_v.weight", ".ffn_down.weight")):
            il = int(name.split(".")[1])
            return QT.Q6_K if use_more_bits(il, c.n_layer) else QT.Q4_K
        return QT.Q4_K
    return {"f32": QT.F32, "f16": QT.F16, "q8_0": QT.Q8_0, "q4_0": QT.Q4_0}[variant]


def encode(w: np.ndarray, t: QT) -> np.ndarray:
    if t == QT.F32:
        return w
    if t == QT.F16:
        return w.astype(np.float16)
    if t == QT.Q4_K:
        b = quantize_q4_k(w)
    elif t == QT.Q6_K:
        b = quantize_q6_k(w)
    else:
        return gguf.quants.quantize(w, t)
    return b.reshape(*(w.shape[:-1] if w.ndim > 1 else (1,)), -1)


# ------------------------------------------------------------------ writing

def write_tiny(c: TinyConfig, variant: str, path: str) -> dict:
    w = gguf.GGUFWriter(path, c.arch)
    w.add_type("model")
    w.add_name(f"tiny-{c.name}-{variant}")
    w.add_description("tiny random-weight test model (make_tiny_gguf.py), "
                      f"seed {c.seed}; not a trained model")
    w.add_context_length(c.n_ctx)
    w.add_embedding_length(c.n_embd)
    w.add_block_count(c.n_layer)
    w.add_feed_forward_length(list(c.n_ff_layers) if c.n_ff_layers else c.n_ff)
    w.add_head_count(c.n_head)
    if c.n_head_kv_swa is not None:
        w.add_head_count_kv([c.n_head_kv_of(il) for il in range(c.n_layer)])
    else:
        w.add_head_count_kv(c.n_head_kv)
    if c.rope_base is not None:
        w.add_rope_freq_base(c.rope_base)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_key_length(c.head_dim)
    w.add_value_length(c.head_dim)
    if c.attn_softcap is not None:
        w.add_attn_logit_softcapping(c.attn_softcap)
    if c.final_softcap is not None:
        w.add_final_logit_softcapping(c.final_softcap)
    if c.sliding_window is not None:
        w.add_sliding_window(c.sliding_window)
    if c.swa_pattern is not None:
        w.add_sliding_window_pattern(list(c.swa_pattern))
    if c.head_dim_swa is not None:
        # llama.cpp rotates n_rot dimensions, the full head's unless the file says
        w.add_key_length_swa(c.head_dim_swa)
        w.add_value_length_swa(c.head_dim_swa)
        w.add_rope_dimension_count(c.head_dim)
        w.add_rope_dimension_count_swa(c.head_dim_swa)
    if c.rope_base_swa is not None:
        w.add_rope_freq_base_swa(c.rope_base_swa)
    if c.shared_kv_layers:
        w.add_shared_kv_layers(c.shared_kv_layers)
    if c.arch in ("gemma4", "gemma3n"):  # llama.cpp requires it for gemma4; 0 for none
        w.add_embedding_length_per_layer_input(c.n_embd_per_layer)
    if c.n_altup:  # as the converter writes them (llama.cpp 0c1e570 reads neither)
        w.add_altup_active_idx(0)
        w.add_altup_num_inputs(c.n_altup)
        # icdf(0.95) in f32 where sparse, icdf(0) = -inf elsewhere, as the converter computes
        w.add_activation_sparsity_scale(
            [1.6448533535003662 if il < c.n_sparse else float("-inf")
             for il in range(c.n_layer)])
    if c.pooling:
        w.add_pooling_type(gguf.PoolingType(c.pooling))
    if c.n_dense:  # llama.cpp's LLM_KV_DENSE_{2,3}_FEAT_{IN,OUT}
        w.add_uint32(f"{c.arch}.dense_2_feat_in", c.n_embd)
        w.add_uint32(f"{c.arch}.dense_2_feat_out", c.n_dense)
        w.add_uint32(f"{c.arch}.dense_3_feat_in", c.n_dense)
        w.add_uint32(f"{c.arch}.dense_3_feat_out", c.n_embd)
    if c.n_expert:
        w.add_expert_count(c.n_expert)
        w.add_expert_used_count(c.n_expert_used)
        w.add_expert_feed_forward_length(c.n_ff_exp)
    w.add_file_type(int(FILE_TYPE[variant]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    toks, scores, types = tiny_vocab(c.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_sep_token(False)
    w.add_add_eos_token(c.add_eos)
    w.add_add_space_prefix(False)

    used: dict[str, int] = {}
    for name, shape, std in tensor_specs(c):
        wt = make_weight(c, name, shape, std)
        t = pick_type(c, variant, name, wt.ndim, wt.shape)
        data = encode(wt, t)
        if t in (QT.F32, QT.F16):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=t)
        used[t.name] = used.get(t.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return used


def self_check() -> None:
    """K-quant encoders round-trip through gguf-py's (ggml-mirroring) decoders."""
    r = np.random.RandomState(7)
    x = (0.05 * r.standard_normal((4, 512))).astype(np.float32)
    for t, enc, tol in ((QT.Q4_K, quantize_q4_k, 0.08), (QT.Q6_K, quantize_q6_k, 0.02)):
        b = enc(x).reshape(4, -1)
        y = gguf.quants.dequantize(b, t).reshape(x.shape)
        rel = np.abs(y - x).max() / np.abs(x).max()
        assert rel < tol, (t.name, rel)


def all_models():
    for c in CONFIGS.values():
        for v in c.variants:
            yield f"tiny-{c.name}-{v}", c, v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--outdir", default=".")
    ap.add_argument("--only", action="append", help="model name (repeatable)")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args(argv)
    if a.list:
        for n, c, v in all_models():
            print(n)
        return 0
    self_check()
    os.makedirs(a.outdir, exist_ok=True)
    for n, c, v in all_models():
        if a.only and n not in a.only:
            continue
        path = os.path.join(a.outdir, n + ".gguf")
        used = write_tiny(c, v, path)
        print(f"{path}: {os.path.getsize(path):,} bytes {used}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
