//! The Gemma forward pass (gemma, gemma2, gemma3, gemma4) as one ggml graph, read top to
//! bottom like the paper's diagram. The versions differ only by [`Config`] fields and the
//! weights a file has: post-norms (2, 3, 4), per-head Q/K norms (3, 4), the attention logit
//! soft-cap (2), sliding-window layers and their rope base (2, 3, 4), the final soft-cap (2,
//! 3, 4); Gemma 4's narrower sliding-window heads, proportional rope on global layers
//! (`rope_freqs`), values equal to keys where a layer has no `attn_v`, the values' RMS norm,
//! layers that attend over an earlier layer's cache, per-layer embeddings and a per-layer
//! output scale.
//!
//! Follows llama.cpp's `src/models/gemma.cpp`, `gemma2.cpp`, `gemma3.cpp` and `gemma4.cpp`,
//! and names the
//! intermediate tensors as its `cb()` does (`attn_norm-3`, `ffn_out-3`, `result_output`), so
//! that a graph can be compared with llama.cpp's node by node.

use super::config::LayerKind;
use super::kv_cache::KvCache;
use super::weights::{ExpertGateUp, ExpertWeights, LayerWeights, PleWeights, Qkv, Scaled, Weights};
use super::{Config, PerKind, Pooling, Result};
use crate::ggml::{Context, Graph, GraphId, RopeMode, Tensor, TensorId, Type};

/// What a batch's graph depends on: two batches of the same shape share one graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    pub n_tokens: usize,
    /// Cache slots attended over, per kind of layer.
    pub n_kv: PerKind<usize>,
    /// Rows that go through the output head, the batch's last ones: all of them when `None`.
    pub n_out: Option<usize>,
    pub head: Head,
}

/// What a batch's graph ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Logits over the vocabulary, a row per output.
    Logits,
    /// The normed hidden states pooled as said (llama.cpp's `build_pooling`), then through the
    /// model's dense projections where it has them (`build_dense_out`): one embedding per
    /// batch, or with [`Pooling::None`] one per token. The batch is one whole text.
    Embedding(Pooling),
}

/// The inputs of one kind of layer's attention.
#[derive(Debug, Clone, Copy)]
pub struct AttnInputs {
    /// Cache slot of each token (I32).
    pub slots: TensorId,
    /// Attention mask (F16, `n_kv` × tokens).
    pub mask: TensorId,
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
    /// Per kind of layer, `None` when the model has no layer of that kind.
    pub attn_inputs: PerKind<Option<AttnInputs>>,
    /// Mean pooling's weights (F32, 1/n_tokens each), for [`Head::Embedding`]`(Mean)`.
    pub mean: Option<TensorId>,
    /// Logits (vocab × outputs), or embeddings (n_embd × outputs).
    pub output: TensorId,
}

/// Nodes a graph of this config needs at most.
pub fn graph_size(c: &Config) -> usize {
    let per_layer = match (&c.altup, c.n_embd_per_layer) {
        // AltUp's predictions, corrections and LAuReL: ~80 more nodes.
        (Some(_), _) => 176,
        (None, p) if p > 0 => 96,
        _ => 64,
    };
    // The experts' ops: ~40, and a view and an add per chosen expert.
    let experts = c.experts.as_ref().map_or(0, |e| {
        let layers = e.layers.iter().filter(|&&m| m).count();
        layers * (48 + 2 * e.n_used)
    });
    per_layer * c.dims.n_layer + experts + 64
}

/// Builds the graph of a batch of `shape.n_tokens` tokens attending over `shape.n_kv` cache
/// slots per kind of layer, producing logits for `shape.n_out` rows. Attention is ggml's fused
/// flash attention, or with `flash_attn` off softmax(q·kᵀ + mask)·v in three ops. Gemma 3n's
/// AltUp streams have a forward pass of their own ([`super::gemma3n::build`]).
pub fn build<'c>(
    ctx: &'c Context<'static>,
    c: &Config,
    w: &'c Weights<'_>,
    cache: &'c KvCache,
    shape: BatchShape,
    flash_attn: bool,
) -> Result<Forward> {
    if c.altup.is_some() {
        return super::gemma3n::build(ctx, c, w, cache, shape, flash_attn);
    }
    let g = Ops { ctx, c, w };
    let mut graph = ctx.new_graph(graph_size(c))?;
    let inp = g.inputs(cache, shape, flash_attn)?;
    let n_out = inp.n_out;

    // Embedding, scaled by sqrt(hidden).
    let mut x = g.embed(inp.tokens);
    // Gemma 4: every layer's slice of its per-layer input, (width, tokens, layers).
    let per_layer = w.ple.as_ref().map(|p| g.per_layer_inputs(p, inp.tokens, x));

    for (il, lw) in w.layers.iter().enumerate() {
        let l = Some(il);
        let last = il + 1 == w.layers.len();

        // Attention block: norm, attention over the cache, post-norm, residual.
        let h = g.norm(x, lw.attn_norm, "attn_norm", l);
        let mut a = g.attention(&mut graph, cache, &inp, il, lw, h)?;
        // Past the last attention, no row depends on another: only the wanted rows go on
        // through the last feed-forward block and the head (as llama.cpp does, at this point:
        // the queries and attention of every row are computed as it computes them, so that
        // the same kernels give the same numbers).
        if last {
            a = last_rows(ctx, a, n_out);
            x = last_rows(ctx, x, n_out);
        }
        if let Some(pn) = lw.post_attn_norm {
            a = g.norm(a, pn, "attn_post_norm", l);
        }
        x = g.name(ctx.add(x, a), "sa_out", l);

        // Feed-forward block: norm, GeGLU, post-norm, residual. With experts (Gemma 4's MoE),
        // the dense MLP and the experts each get their own norms and are summed.
        let mut f = match &lw.experts {
            None => g.mlp(lw, g.norm(x, lw.ffn_norm, "ffn_norm", l), "ffn_out", il),
            Some(ew) => {
                let mlp = g.mlp(
                    lw,
                    g.norm(x, lw.ffn_norm, "ffn_norm_1", l),
                    "ffn_mlp_out",
                    il,
                );
                let mlp = g.norm(mlp, ew.post_norm_mlp, "ffn_mlp", l);
                let moe = g.experts(ew, x, il);
                let moe = g.norm(moe, ew.post_norm, "ffn_moe", l);
                g.name(ctx.add(mlp, moe), "ffn_moe_combined", l)
            }
        };
        if let Some(pn) = lw.post_ffn_norm {
            f = g.norm(f, pn, "ffn_post_norm", l);
        }
        x = ctx.add(x, f);

        // Gemma 4's per-layer embedding: the hidden state gates this layer's input, which is
        // projected back, normed and added.
        if let (Some(pw), Some(inputs)) = (&lw.ple, per_layer) {
            let mut input = layer_slice(ctx, inputs, il);
            if last {
                input = last_rows(ctx, input, n_out);
            }
            let gate = ctx.gelu(g.matmul(pw.inp_gate, g.name(x, "pe_in", l), "inp_gate", l));
            let out = g.matmul(pw.proj, ctx.mul(gate, input), "per_layer_proj", l);
            x = ctx.add(x, g.norm(out, pw.post_norm, "per_layer_embd_out", l));
        }
        if let Some(s) = lw.out_scale {
            x = g.name(ctx.mul(x, g.weight(s)), "out_scaled", l);
        }
        x = g.name(x, "l_out", l);
    }

    if w.layers.is_empty() {
        x = last_rows(ctx, x, n_out);
    }
    g.finish(graph, &inp, x)
}

/// A batch's input tensors and what the layers share of them.
pub(super) struct Inputs<'c> {
    pub shape: BatchShape,
    pub tokens: Tensor<'c>,
    pub positions: Tensor<'c>,
    /// Per kind of layer: cache slots of the batch's tokens, attention mask.
    pub attn: PerKind<Option<(Tensor<'c>, Tensor<'c>)>>,
    /// The rows whose output is wanted: the batch's last `n_out`.
    pub n_out: usize,
    pub flash_attn: bool,
}

/// The graph's building blocks over one context, config and set of weights.
pub(super) struct Ops<'c, 'a, 'm> {
    pub ctx: &'c Context<'static>,
    pub c: &'a Config,
    pub w: &'c Weights<'m>,
}

/// One layer's attention inputs for this batch.
struct Attention<'c> {
    /// Cache slots attended over.
    n_kv: usize,
    slots: Tensor<'c>,
    mask: Tensor<'c>,
    flash_attn: bool,
}

impl<'c> Ops<'c, '_, '_> {
    /// The batch's inputs: tokens, positions, and each kind of layer's slots and mask.
    pub fn inputs(
        &self,
        cache: &KvCache,
        shape: BatchShape,
        flash_attn: bool,
    ) -> Result<Inputs<'c>> {
        let b = shape.n_tokens;
        let mut attn = PerKind::default();
        for (kind, &n_kv) in shape.n_kv.iter() {
            if cache.layers.iter().any(|l| l.kind == kind) {
                *attn.get_mut(kind) = Some((
                    self.input(Type::I32, &[b], &format!("inp_slots_{}", kind.name()))?,
                    self.input(Type::F16, &[n_kv, b], &format!("inp_mask_{}", kind.name()))?,
                ));
            }
        }
        Ok(Inputs {
            shape,
            tokens: self.input(Type::I32, &[b], "inp_tokens")?,
            positions: self.input(Type::I32, &[b], "inp_pos")?,
            attn,
            n_out: shape.n_out.unwrap_or(b).clamp(1, b),
            flash_attn,
        })
    }

    /// The tokens' embeddings, scaled by sqrt(hidden).
    pub fn embed(&self, tokens: Tensor<'c>) -> Tensor<'c> {
        let embd = self.ctx.get_rows(self.weight(self.w.token_embd), tokens);
        let scaled = self.ctx.scale(embd, (self.c.dims.n_embd as f32).sqrt());
        self.name(scaled, "inp_scaled", None)
    }

    /// Layer `il`'s attention on its normed input `h`: Q/K/V projections, Q/K(/V) norms,
    /// rope, attention over the cache (storing this batch's keys and values where the layer
    /// has a cache of its own), output projection.
    pub fn attention(
        &self,
        graph: &mut Graph<'c>,
        cache: &'c KvCache,
        inp: &Inputs<'c>,
        il: usize,
        lw: &LayerWeights,
        h: Tensor<'c>,
    ) -> Result<Tensor<'c>> {
        let (ctx, c, w) = (self.ctx, self.c, self.w);
        let (l, b, n_head) = (Some(il), inp.shape.n_tokens, c.dims.n_head);
        let kind = c.kind(il);
        let (rope_base, rope_scale) = (*c.rope_base.get(kind), *c.rope_scale.get(kind));
        let (dk, dv) = c.head_dims(kind);
        let n_head_kv = c.n_head_kv(kind);
        let factors = match kind {
            LayerKind::Global => w.rope_freqs.map(|id| self.weight(id)),
            LayerKind::Local => None,
        };
        let rope = |t| {
            let n_rot = *c.n_rot.get(kind);
            ctx.rope(
                t,
                inp.positions,
                n_rot,
                RopeMode::Neox,
                rope_base,
                rope_scale,
                factors,
            )
        };
        let own_kv = il < c.n_layer_kv;
        let (q_proj, kv_proj) = self.project_qkv(
            &lw.qkv,
            h,
            [n_head * dk, n_head_kv * dk, n_head_kv * dv],
            own_kv,
            il,
        );
        let mut q = ctx.reshape(q_proj, &[dk, n_head, b]);
        if let Some(qn) = lw.q_norm {
            q = self.norm(q, qn, "Qcur_normed", l);
        }
        q = rope(q);
        if c.query_scale != 1.0 {
            q = ctx.scale(q, c.query_scale);
        }
        // This batch's keys and values, for layers with a cache of their own.
        let new_kv = kv_proj.map(|(k_proj, v)| {
            let mut k = ctx.reshape(k_proj, &[dk, n_head_kv, b]);
            if let Some(kn) = lw.k_norm {
                k = self.norm(k, kn, "Kcur_normed", l);
            }
            let v = if c.v_norm {
                let normed = ctx.rms_norm(ctx.reshape(v, &[dv, n_head_kv, b]), c.norm_eps);
                ctx.reshape(self.name(normed, "Vcur_normed", l), &[dv * n_head_kv, b])
            } else {
                v
            };
            (rope(k), v)
        });
        let (slots, mask) = inp
            .attn
            .get(kind)
            .expect("inputs exist for every kind in use");
        let kv = Attention {
            n_kv: *inp.shape.n_kv.get(kind),
            slots,
            mask,
            flash_attn: inp.flash_attn,
        };
        let att = self.attend(graph, cache, il, q, new_kv, &kv)?;
        Ok(self.matmul(lw.wo, att, "attn_out", l))
    }

    /// The output norm and the head ([`Head`]) on the final hidden states `x` (already only
    /// the wanted rows), ending the graph.
    pub fn finish(&self, mut graph: Graph<'c>, inp: &Inputs<'c>, x: Tensor<'c>) -> Result<Forward> {
        let (ctx, c, w) = (self.ctx, self.c, self.w);
        let x = self.norm(x, w.output_norm, "result_norm", None);
        let mut mean = None;
        let output = match inp.shape.head {
            Head::Logits => {
                let logits = self.matmul(w.output, x, "result_output", None);
                match c.final_softcap {
                    Some(cap) => self.name(soft_cap(ctx, logits, cap), "result_output", None),
                    None => logits,
                }
            }
            Head::Embedding(pooling) => {
                let pooled = match pooling {
                    Pooling::None => x,
                    Pooling::Mean => {
                        let weights =
                            self.input(Type::F32, &[inp.shape.n_tokens, 1], "inp_mean")?;
                        mean = Some(weights);
                        let rows_t = ctx.cont(ctx.permute(x, [1, 0, 2, 3]));
                        ctx.mul_mat(rows_t, weights)
                    }
                    Pooling::Cls => ctx.cont(first_rows(ctx, x, 1)),
                    Pooling::Last => ctx.cont(last_rows(ctx, x, 1)),
                };
                let mut e = self.name(pooled, "result_embd_pooled", None);
                if let Some((dense_2, dense_3)) = w.dense {
                    e = ctx.mul_mat(self.weight(dense_3), ctx.mul_mat(self.weight(dense_2), e));
                    e = self.name(e, "result_embd_pooled", None);
                }
                e
            }
        };
        let output = output.set_output();
        graph.expand(output);
        let id = |t: Tensor<'c>| ctx.id_of(t);
        Ok(Forward {
            shape: inp.shape,
            graph: ctx.graph_id(&graph),
            tokens: id(inp.tokens),
            positions: id(inp.positions),
            attn_inputs: inp.attn.map(|t| {
                t.map(|(slots, mask)| AttnInputs {
                    slots: id(slots),
                    mask: id(mask),
                })
            }),
            mean: mean.map(id),
            output: id(output),
        })
    }

    fn input(&self, ty: Type, shape: &[usize], name: &str) -> Result<Tensor<'c>> {
        Ok(self.ctx.new_tensor(ty, shape, name)?.set_input())
    }

    pub fn weight(&self, id: TensorId) -> Tensor<'c> {
        self.w.ctx.resolve(id)
    }

    /// Names `t` as llama.cpp's `cb()` does: `name-il` inside layer il, `name` outside.
    pub fn name(&self, t: Tensor<'c>, name: &str, il: Option<usize>) -> Tensor<'c> {
        match il {
            Some(il) => t.set_name(&format!("{name}-{il}")),
            None => t.set_name(name),
        }
    }

    /// A weight matrix times a batch of rows.
    pub fn matmul(&self, wt: TensorId, x: Tensor<'c>, name: &str, il: Option<usize>) -> Tensor<'c> {
        self.name(self.ctx.mul_mat(self.weight(wt), x), name, il)
    }

    /// RMSNorm; the GGUF stores Gemma's (1 + w) already.
    pub fn norm(&self, x: Tensor<'c>, wt: TensorId, name: &str, il: Option<usize>) -> Tensor<'c> {
        let normed = self.ctx.rms_norm(x, self.c.norm_eps);
        self.name(self.ctx.mul(normed, self.weight(wt)), name, il)
    }

    /// The queries of `h`, and with `own_kv` its keys and values (the keys where a layer has
    /// no value projection); `dims`: the query, key and value widths.
    fn project_qkv(
        &self,
        p: &Qkv,
        h: Tensor<'c>,
        dims: [usize; 3],
        own_kv: bool,
        il: usize,
    ) -> (Tensor<'c>, Option<(Tensor<'c>, Tensor<'c>)>) {
        let (ctx, l) = (self.ctx, Some(il));
        match *p {
            Qkv::Separate { wq, wk, wv } => {
                let q = self.matmul(wq, h, "Qcur", l);
                let kv = wk.filter(|_| own_kv).map(|wk| {
                    let k = self.matmul(wk, h, "Kcur", l);
                    (k, wv.map_or(k, |wv| self.matmul(wv, h, "Vcur", l)))
                });
                (q, kv)
            }
            Qkv::Fused(w) => {
                let qkv = self.matmul(w, h, "wqkv", l);
                let ([_, b, ..], [elem, row, ..]) = (qkv.shape(), qkv.strides());
                let part = |width: usize, at: usize, name: &str| {
                    let v = ctx.view(qkv, &[width, b], &[row], at * elem);
                    self.name(ctx.cont(v), name, l)
                };
                let [q_dim, k_dim, v_dim] = dims;
                let q = part(q_dim, 0, "Qcur");
                let kv = own_kv.then(|| {
                    (
                        part(k_dim, q_dim, "Kcur"),
                        part(v_dim, q_dim + k_dim, "Vcur"),
                    )
                });
                (q, kv)
            }
        }
    }

    /// The dense GeGLU feed-forward of `h`.
    fn mlp(&self, lw: &LayerWeights, h: Tensor<'c>, name: &str, il: usize) -> Tensor<'c> {
        let l = Some(il);
        let gated = self.ctx.geglu(
            self.matmul(lw.ffn_gate, h, "ffn_gate", l),
            self.matmul(lw.ffn_up, h, "ffn_up", l),
        );
        self.matmul(lw.ffn_down, gated, name, l)
    }

    /// Gemma 4's experts (llama.cpp's `build_moe_ffn` with softmax gating and renormalised
    /// weights): the router scores the residual stream `x` (RMS-normed, scaled by
    /// 1/sqrt(n_embd) and per channel), each token's top `n_used` experts run GeGLU on its
    /// `pre_ffw_norm_2`-normed input, and their outputs are summed, weighted by their
    /// probabilities renormalised over the chosen ones.
    fn experts(&self, ew: &ExpertWeights, x: Tensor<'c>, il: usize) -> Tensor<'c> {
        let (ctx, c, l) = (self.ctx, self.c, Some(il));
        let e = c
            .experts
            .as_ref()
            .expect("expert weights come with an expert config");
        let [n_embd, b, ..] = x.shape();
        let cur = self.norm(x, ew.pre_norm, "ffn_norm_2", l);

        let r = ctx.scale(ctx.rms_norm(x, c.norm_eps), 1.0 / (n_embd as f32).sqrt());
        let r = ctx.mul(r, self.weight(ew.router_scale));
        let logits = self.matmul(ew.router, r, "ffn_moe_logits", l);
        let probs = self.name(ctx.soft_max(logits), "ffn_moe_probs", l);
        let selected = self.name(ctx.argsort_top_k(probs, e.n_used), "ffn_moe_topk", l);
        let weights = ctx.get_rows(ctx.reshape(probs, &[1, e.n_expert, b]), selected);
        let weights = ctx.reshape(weights, &[e.n_used, b]);
        // llama.cpp clamps the sum at F16's smallest normal, against a division by zero.
        let sum = ctx.clamp(ctx.sum_rows(weights), 6.103_515_6e-5, f32::INFINITY);
        let weights = ctx.reshape(ctx.div(weights, sum), &[1, e.n_used, b]);
        let weights = self.name(weights, "ffn_moe_weights_norm", l);

        // Each chosen expert's product, scaled by its per-expert factor where the file has one.
        let apply = |s: Scaled, input: Tensor<'c>, name: &str| {
            let out = ctx.mul_mat_id(self.weight(s.w), input, selected);
            let out = match s.scale {
                None => out,
                Some(scale) => {
                    let per = ctx.reshape(self.weight(scale), &[1, e.n_expert, 1]);
                    let per = ctx.repeat(per, [1, e.n_expert, b, 1]);
                    ctx.mul(out, ctx.get_rows(per, selected))
                }
            };
            self.name(out, name, l)
        };
        let cur = ctx.reshape(cur, &[n_embd, 1, b]);
        let (gate, up) = match ew.gate_up {
            ExpertGateUp::Fused(s) => {
                let gate_up = apply(s, cur, "ffn_moe_gate_up");
                let ([n2, used, ..], [elem, nb1, nb2, _]) = (gate_up.shape(), gate_up.strides());
                let half = |at: usize| ctx.view(gate_up, &[n2 / 2, used, b], &[nb1, nb2], at);
                (half(0), half(n2 / 2 * elem))
            }
            ExpertGateUp::Separate { gate, up } => {
                let up = apply(up, cur, "ffn_moe_up");
                (apply(gate, cur, "ffn_moe_gate"), up)
            }
        };
        let act = self.name(ctx.geglu(gate, up), "ffn_moe_geglu", l);
        let out = apply(ew.down, act, "ffn_moe_down");
        let out = self.name(ctx.mul(out, weights), "ffn_moe_weighted", l);

        // The sum over the chosen experts, one view each.
        let [_, nb1, nb2, _] = out.strides();
        let slot = |i: usize| ctx.view(out, &[n_embd, b], &[nb2], i * nb1);
        let mut sum = slot(0);
        for i in 1..e.n_used {
            sum = ctx.add(sum, slot(i));
        }
        if e.n_used == 1 {
            sum = ctx.cont(sum);
        }
        self.name(sum, "ffn_moe_out", l)
    }

    /// Stores this batch's keys and values in layer `il`'s cache (unless the layer reads an
    /// earlier layer's, `kv` then `None`), then attends over the cache (llama.cpp's
    /// `build_attn`). `q`: (head_dim, heads, tokens), scaled and roped; `kv`: keys (head_dim,
    /// kv heads, tokens) and values (head_dim_v × kv heads, tokens). Returns (head_dim_v ×
    /// heads, tokens).
    fn attend(
        &self,
        graph: &mut Graph<'c>,
        cache: &'c KvCache,
        il: usize,
        q: Tensor<'c>,
        kv: Option<(Tensor<'c>, Tensor<'c>)>,
        a: &Attention<'c>,
    ) -> Result<Tensor<'c>> {
        let (ctx, c) = (self.ctx, self.c);
        let [dk, n_head, b, _] = q.shape();
        if let Some((k, v)) = kv {
            for store in cache.store(ctx, il, k, v, a.slots)? {
                graph.expand(store);
            }
        }
        let (keys, values) = cache.view(ctx, il, a.n_kv);
        let q = ctx.permute(q, [0, 2, 1, 3]);
        let kqv = if a.flash_attn {
            let cap = c.attn_softcap.unwrap_or(0.0);
            ctx.flash_attn_ext(q, keys, values, Some(a.mask), 1.0, cap)
        } else {
            // Scores (n_kv × tokens × heads); KV heads broadcast over their query heads.
            let mut kq = ctx.mul_mat(keys, q);
            if let Some(cap) = c.attn_softcap {
                kq = soft_cap(ctx, kq, cap);
            }
            let kq = ctx.soft_max_ext(kq, Some(a.mask), 1.0);
            let values_t = ctx.cont(ctx.permute(values, [1, 0, 2, 3]));
            let kqv = ctx.mul_mat(values_t, kq);
            ctx.cont(ctx.permute(kqv, [0, 2, 1, 3]))
        };
        let dv = values.shape()[0];
        debug_assert_eq!(dk, keys.shape()[0]);
        let out = ctx.reshape(kqv, &[dv * n_head, b]);
        Ok(self.name(out, "kqv_out", Some(il)))
    }
}

impl<'c> Ops<'c, '_, '_> {
    /// Gemma 4's per-layer inputs (llama.cpp's `build_inp_per_layer` and
    /// `project_per_layer_inputs`): each token's row of the per-layer table, scaled by
    /// sqrt(width), plus the projection of the scaled embedding `x`, normed; the sum times
    /// 1/sqrt(2), as (width, tokens, layers) so that a layer's slice is one view.
    pub fn per_layer_inputs(
        &self,
        p: &PleWeights,
        tokens: Tensor<'c>,
        x: Tensor<'c>,
    ) -> Tensor<'c> {
        let (ctx, c) = (self.ctx, self.c);
        let (width, n_layer, b) = (c.n_embd_per_layer, c.dims.n_layer, tokens.shape()[0]);
        let rows = ctx.get_rows(self.weight(p.token_embd), tokens);
        let rows = ctx.scale(
            ctx.reshape(rows, &[width, n_layer, b]),
            (width as f32).sqrt(),
        );
        let rows = self.name(rows, "inp_per_layer_selected", None);
        let proj = ctx.mul_mat(self.weight(p.model_proj), x);
        let proj = ctx.scale(proj, 1.0 / (c.dims.n_embd as f32).sqrt());
        let proj = ctx.reshape(proj, &[width, n_layer, b]);
        let proj = self.norm(proj, p.proj_norm, "per_layer_proj", None);
        let sum = ctx.scale(ctx.add(proj, rows), std::f32::consts::FRAC_1_SQRT_2);
        let sum = self.name(sum, "inp_per_layer", None);
        ctx.cont(ctx.permute(sum, [0, 2, 1, 3]))
    }
}

/// Layer `il`'s slice (width, tokens) of the per-layer inputs (width, tokens, layers).
pub(super) fn layer_slice<'c>(ctx: &'c Context<'_>, inputs: Tensor<'c>, il: usize) -> Tensor<'c> {
    let ([width, b, ..], nb) = (inputs.shape(), inputs.strides());
    ctx.view(inputs, &[width, b], &[nb[1]], il * nb[2])
}

/// cap · tanh(x / cap): Gemma 2's soft-cap of attention scores and logits.
pub(super) fn soft_cap<'c>(ctx: &'c Context<'_>, x: Tensor<'c>, cap: f32) -> Tensor<'c> {
    ctx.scale(ctx.tanh(ctx.scale(x, 1.0 / cap)), cap)
}

/// The first `n` rows of `t` (a view, no copy).
fn first_rows<'c>(ctx: &'c Context<'_>, t: Tensor<'c>, n: usize) -> Tensor<'c> {
    let [ne0, ..] = t.shape();
    ctx.view(t, &[ne0, n], &[t.strides()[1]], 0)
}

/// The last `n` rows of `t` (a view, no copy).
pub(super) fn last_rows<'c>(ctx: &'c Context<'_>, t: Tensor<'c>, n: usize) -> Tensor<'c> {
    let [ne0, rows, ..] = t.shape();
    if n == rows {
        return t;
    }
    let stride = t.strides()[1];
    ctx.view(t, &[ne0, n], &[stride], (rows - n) * stride)
}
