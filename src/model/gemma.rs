//! The Gemma forward pass (gemma, gemma2, gemma3) as one ggml graph, read top to bottom like
//! the paper's diagram. The versions differ only by [`Config`] fields: post-norms (2, 3),
//! per-head Q/K norms (3), the attention logit soft-cap (2), sliding-window layers and their
//! rope base (2, 3), the final soft-cap (2).
//!
//! Follows llama.cpp's `src/models/gemma.cpp`, `gemma2.cpp` and `gemma3.cpp`.

use super::kv_cache::{KvCache, GLOBAL, LOCAL};
use super::weights::Weights;
use super::{Config, Result};
use crate::ggml::{Context, GraphId, RopeMode, Tensor, TensorId, Type};

/// What a batch's graph depends on: two batches of the same shape share one graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    pub n_tokens: usize,
    /// Cache slots attended over, per kind of layer (global, local).
    pub n_kv: [usize; 2],
    /// Rows that go through the output head, the batch's last ones: all of them when `None`.
    pub n_out: Option<usize>,
}

/// The graph of one batch (in the context given to [`build`]) and the tensors to fill before
/// computing it.
pub struct Forward {
    pub shape: BatchShape,
    pub graph: GraphId,
    /// Token ids (I32).
    pub tokens: TensorId,
    /// Positions (I32).
    pub positions: TensorId,
    /// Per kind of layer (global, local): cache slot of each token (I32) and attention mask
    /// (F16, `n_kv` × tokens); `None` when the model has no layer of that kind.
    pub slots: [Option<TensorId>; 2],
    pub masks: [Option<TensorId>; 2],
    /// Logits, vocab × outputs.
    pub logits: TensorId,
}

/// Nodes a graph of this config needs at most.
pub fn graph_size(c: &Config) -> usize {
    64 * c.n_layer + 64
}

/// Builds the graph of a batch of `shape.n_tokens` tokens attending over `shape.n_kv` cache
/// slots per kind of layer, producing logits for `shape.n_out` rows. Attention is ggml's fused
/// flash attention, or with `flash_attn` off softmax(q·kᵀ + mask)·v in three ops.
pub fn build<'c>(
    ctx: &'c Context<'static>,
    c: &Config,
    w: &'c Weights<'_>,
    cache: &'c KvCache,
    shape: BatchShape,
    flash_attn: bool,
) -> Result<Forward> {
    let BatchShape {
        n_tokens,
        n_kv,
        n_out,
    } = shape;
    let mut graph = ctx.new_graph(graph_size(c))?;
    let weight = |id: TensorId| -> Tensor<'c> { w.ctx.resolve(id) };
    // A weight matrix times a batch of rows, on the weights' layout for that many rows.
    let matmul = |wt: TensorId, x: Tensor<'c>| ctx.mul_mat(weight(w.for_rows(wt, x.shape()[1])), x);
    // RMSNorm; the GGUF stores Gemma's (1 + w) already.
    let norm = |x: Tensor<'c>, wt: TensorId| ctx.mul(ctx.rms_norm(x, c.norm_eps), weight(wt));
    let (e, b) = (c.n_embd, n_tokens);
    let (n_head, n_head_kv) = (c.n_head, c.n_head_kv);
    let (dk, dv) = (c.head_dim_k, c.head_dim_v);

    let input = |ty: Type, shape: &[usize], name: &str| -> Result<Tensor<'c>> {
        Ok(ctx.new_tensor(ty, shape, name)?.set_input())
    };
    let tokens = input(Type::I32, &[b], "inp_tokens")?;
    let positions = input(Type::I32, &[b], "inp_pos")?;
    let has_kind = |kind: usize| cache.layers.iter().any(|l| l.kind == kind);
    let mut slots = [None, None];
    let mut masks = [None, None];
    for kind in [GLOBAL, LOCAL] {
        if has_kind(kind) {
            slots[kind] = Some(input(Type::I32, &[b], &format!("inp_slots_{kind}"))?);
            masks[kind] = Some(input(
                Type::F16,
                &[n_kv[kind], b],
                &format!("inp_mask_{kind}"),
            )?);
        }
    }

    // The rows whose logits are wanted: the batch's last `n_out`.
    let n_out = n_out.unwrap_or(b).clamp(1, b);
    let last_rows = |t: Tensor<'c>, n: usize| -> Tensor<'c> {
        let [ne0, rows, ..] = t.shape();
        if n == rows {
            return t;
        }
        let stride = t.strides()[1];
        ctx.view(t, &[ne0, n], &[stride], (rows - n) * stride)
    };

    // Embedding, scaled by sqrt(hidden).
    let mut x = ctx.scale(
        ctx.get_rows(weight(w.token_embd), tokens),
        (e as f32).sqrt(),
    );

    for (il, lw) in w.layers.iter().enumerate() {
        let kind = cache.layers[il].kind;
        let (rope_base, rope_scale) = c.rope_for(il);

        // Attention block.
        let h = norm(x, lw.attn_norm);
        let mut q = ctx.reshape(matmul(lw.wq, h), &[dk, n_head, b]);
        let mut k = ctx.reshape(matmul(lw.wk, h), &[dk, n_head_kv, b]);
        let v = matmul(lw.wv, h);
        if let (Some(qn), Some(kn)) = (lw.q_norm, lw.k_norm) {
            q = norm(q, qn);
            k = norm(k, kn);
        }
        q = ctx.rope(q, positions, dk, RopeMode::Neox, rope_base, rope_scale);
        k = ctx.rope(k, positions, dk, RopeMode::Neox, rope_base, rope_scale);
        q = ctx.scale(q, c.query_scale);

        // Store this batch's keys and values, then attend over the cache.
        let slot_ids = slots[kind].expect("inputs exist for every kind in use");
        let k_cache = cache.ctx.resolve(cache.layers[il].k);
        let v_cache = cache.ctx.resolve(cache.layers[il].v);
        graph.expand(ctx.set_rows(k_cache, ctx.reshape(k, &[dk * n_head_kv, b]), slot_ids)?);
        graph.expand(ctx.set_rows(v_cache, v, slot_ids)?);
        let n = n_kv[kind];
        let head_stride =
            |t: Tensor<'_>, d: usize| t.ty().row_bytes(d as u64).unwrap_or(0) as usize;
        let keys = ctx.view(
            k_cache,
            &[dk, n, n_head_kv],
            &[k_cache.strides()[1], head_stride(k_cache, dk)],
            0,
        );
        let values = ctx.view(
            v_cache,
            &[dv, n, n_head_kv],
            &[v_cache.strides()[1], head_stride(v_cache, dv)],
            0,
        );
        let q = ctx.permute(q, [0, 2, 1, 3]);
        let att = if flash_attn {
            ctx.flash_attn_ext(
                q,
                keys,
                values,
                masks[kind],
                1.0,
                c.attn_softcap.unwrap_or(0.0),
            )
        } else {
            // Scores (n_kv × tokens × heads); KV heads broadcast over their query heads.
            let mut kq = ctx.mul_mat(keys, q);
            if let Some(cap) = c.attn_softcap {
                kq = ctx.scale(ctx.tanh(ctx.scale(kq, 1.0 / cap)), cap);
            }
            let kq = ctx.soft_max_ext(kq, masks[kind], 1.0);
            let values_t = ctx.cont(ctx.permute(values, [1, 0, 2, 3]));
            let kqv = ctx.mul_mat(values_t, kq);
            ctx.cont(ctx.permute(kqv, [0, 2, 1, 3]))
        };
        let mut a = matmul(lw.wo, ctx.reshape(att, &[dv * n_head, b]));
        // Past the last attention, no row depends on another: only the wanted rows go on
        // through the last feed-forward block and the head (as llama.cpp does, at this
        // point: the queries and attention of every row are computed as it computes them,
        // so that the same kernels give the same numbers).
        if il + 1 == w.layers.len() {
            a = last_rows(a, n_out);
            x = last_rows(x, n_out);
        }
        if let Some(pn) = lw.post_attn_norm {
            a = norm(a, pn);
        }
        x = ctx.add(x, a);

        // Feed-forward block: GeGLU.
        let h = norm(x, lw.ffn_norm);
        let gated = ctx.geglu(matmul(lw.ffn_gate, h), matmul(lw.ffn_up, h));
        let mut f = matmul(lw.ffn_down, gated);
        if let Some(pn) = lw.post_ffn_norm {
            f = norm(f, pn);
        }
        x = ctx.add(x, f);
    }

    if w.layers.is_empty() {
        x = last_rows(x, n_out);
    }
    x = norm(x, w.output_norm);
    let mut logits = matmul(w.output, x);
    if let Some(cap) = c.final_softcap {
        logits = ctx.scale(ctx.tanh(ctx.scale(logits, 1.0 / cap)), cap);
    }
    let logits = logits.set_output().set_name("logits");
    graph.expand(logits);
    let id = |t: Tensor<'c>| ctx.id_of(t);
    Ok(Forward {
        shape,
        graph: ctx.graph_id(&graph),
        tokens: id(tokens),
        positions: id(positions),
        slots: slots.map(|t| t.map(id)),
        masks: masks.map(|t| t.map(id)),
        logits: id(logits),
    })
}
