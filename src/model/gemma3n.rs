//! Gemma 3n's forward pass (llama.cpp's `src/models/gemma3n.cpp`, Hugging Face's
//! `Gemma3nTextDecoderLayer`): Gemma 3's attention and feed-forward blocks, run on one of
//! several streams of the hidden state (AltUp, "alternating updates").
//!
//! The embedding is projected into `n_inputs` streams. Each layer predicts every stream from a
//! mix of all of them (coefficients from a router on the active stream), runs attention and
//! the feed-forward block on the active prediction only, beside a low-rank residual (LAuReL),
//! then corrects every stream by its share of the layer's innovation (output minus
//! prediction); the corrected active stream gates the layer's per-layer embedding, which is
//! added to the other streams. The first layers keep only the gate activations more than a
//! few standard deviations above their mean (activation sparsity). After the last layer the
//! streams are projected back and averaged.
//!
//! The blocks it shares with Gemma 2/3/4 (inputs, attention over the cache, per-layer inputs,
//! the head) are [`super::gemma`]'s; what is here is what only Gemma 3n does.

use super::gemma::{last_rows, layer_slice, BatchShape, Forward, Ops};
use super::kv_cache::KvCache;
use super::weights::{AltUpLayerWeights, Weights};
use super::{Config, Result};
use crate::ggml::{Context, Tensor};

/// See the module's documentation; `shape` and `flash_attn` as [`super::gemma::build`].
pub fn build<'c>(
    ctx: &'c Context<'static>,
    c: &Config,
    w: &'c Weights<'_>,
    cache: &'c KvCache,
    shape: BatchShape,
    flash_attn: bool,
) -> Result<Forward> {
    let g = Ops { ctx, c, w };
    let a = Streams {
        g: &g,
        n: c.altup.as_ref().expect("gemma3n has AltUp").n_inputs,
        active: c.altup.as_ref().map_or(0, |a| a.active),
    };
    let mut graph = ctx.new_graph(super::gemma::graph_size(c))?;
    let inp = g.inputs(cache, shape, flash_attn)?;
    let (proj, unembd) = w.altup.expect("gemma3n has AltUp projections");

    let x = g.embed(inp.tokens);
    let ple = w.ple.as_ref().expect("gemma3n has per-layer embeddings");
    let per_layer = g.per_layer_inputs(ple, inp.tokens, x);
    // The other streams: the embedding projected, rescaled to the embedding's magnitude.
    let mut streams = {
        let [n_embd, b, ..] = x.shape();
        let repeated = ctx.repeat(x, [n_embd, b, a.n - 1, 1]);
        let added = a.rescaled(ctx.mul_mat(g.weight(proj), repeated), x);
        g.name(ctx.concat(x, added, 2), "inp_stacked", None)
    };

    for (il, lw) in w.layers.iter().enumerate() {
        let l = Some(il);
        let aw = lw
            .altup
            .as_ref()
            .expect("gemma3n layers have AltUp weights");
        let predictions = a.predict(streams, aw, il);
        let active = g.name(a.slice(predictions, a.active), "active_prediction", l);

        // Attention and LAuReL side by side on the normed active stream.
        let h = g.norm(active, lw.attn_norm, "attn_norm", l);
        let laurel = a.laurel(h, aw, il);
        let att = g.attention(&mut graph, cache, &inp, il, lw, h)?;
        let post = lw.post_attn_norm.expect("gemma3n has post-norms");
        let att = g.name(
            ctx.add(g.norm(att, post, "attn_post_norm", l), active),
            "attn_gated",
            l,
        );
        let att = ctx.scale(ctx.add(att, laurel), std::f32::consts::FRAC_1_SQRT_2);
        let att = g.name(att, "attn_laurel", l);

        // Feed-forward: GELU(gate) · up, the gate sparsified in the first layers.
        let f = g.norm(att, lw.ffn_norm, "ffn_norm", l);
        let up = g.matmul(lw.ffn_up, f, "ffn_up", l);
        let mut gate = g.matmul(lw.ffn_gate, f, "ffn_gate", l);
        if let Some(std_mul) = c.altup.as_ref().and_then(|a| a.sparsity[il]) {
            gate = gaussian_top_k(ctx, gate, std_mul);
        }
        let f = g.matmul(lw.ffn_down, ctx.mul(up, ctx.gelu(gate)), "ffn_out", l);
        let post = lw.post_ffn_norm.expect("gemma3n has post-norms");
        let out = g.name(
            ctx.add(g.norm(f, post, "ffn_post_norm", l), att),
            "attn_ffw_laurel_gated",
            l,
        );

        // Every stream corrected by the layer's innovation; the corrected active one gates
        // this layer's per-layer input, projected back and added to the other streams.
        let corrected = a.correct(predictions, out, aw, il);
        let pw = lw
            .ple
            .as_ref()
            .expect("gemma3n layers have per-layer weights");
        let first = ctx.mul(a.slice(corrected, a.active), g.weight(aw.correct_scale));
        let first = ctx.gelu(g.matmul(pw.inp_gate, first, "first_prediction_gated", l));
        let first = ctx.mul(first, layer_slice(ctx, per_layer, il));
        let first = g.matmul(pw.proj, first, "first_prediction_scaled", l);
        let first = g.norm(first, pw.post_norm, "first_prediction_out", l);
        let rest = ctx.add(a.rest(corrected), first);
        streams = g.name(ctx.concat(a.slice(corrected, 0), rest, 2), "l_out", l);
    }

    // The streams back into one: the others projected back to the active one's magnitude,
    // averaged with stream 0.
    let target = a.slice(streams, a.active);
    let back = a.rescaled(ctx.mul_mat(g.weight(unembd), a.rest(streams)), target);
    let back = g.name(back, "altup_unembd", None);
    let mut x = a.slice(streams, 0);
    for i in 0..a.n - 1 {
        x = ctx.add(x, a.slice(back, i));
    }
    let x = g.name(ctx.scale(x, 1.0 / a.n as f32), "unembd_merged", None);
    g.finish(graph, &inp, last_rows(ctx, x, inp.n_out))
}

/// AltUp's operations on the streams, (n_embd, tokens, n) tensors.
struct Streams<'o, 'c, 'a, 'm> {
    g: &'o Ops<'c, 'a, 'm>,
    n: usize,
    active: usize,
}

impl<'c> Streams<'_, 'c, '_, '_> {
    /// Stream `i` (n_embd, tokens), a view.
    fn slice(&self, t: Tensor<'c>, i: usize) -> Tensor<'c> {
        layer_slice(self.g.ctx, t, i)
    }

    /// Streams 1.. (n_embd, tokens, n - 1), a view.
    fn rest(&self, t: Tensor<'c>) -> Tensor<'c> {
        let ([n_embd, b, ..], nb) = (t.shape(), t.strides());
        self.g
            .ctx
            .view(t, &[n_embd, b, self.n - 1], &[nb[1], nb[2]], nb[2])
    }

    /// `t` rescaled, per token and stream, to the Euclidean length of `target`'s rows.
    fn rescaled(&self, t: Tensor<'c>, target: Tensor<'c>) -> Tensor<'c> {
        let ctx = self.g.ctx;
        let magnitude = |x| ctx.sqrt(ctx.sum_rows(ctx.sqr(x)));
        ctx.div(ctx.mul(t, magnitude(target)), magnitude(t))
    }

    /// The router's tanh outputs (n, tokens) from stream `x`.
    fn modalities(&self, x: Tensor<'c>, aw: &AltUpLayerWeights, il: usize) -> Tensor<'c> {
        let (g, ctx) = (self.g, self.g.ctx);
        let normed = g.norm(x, aw.router_norm, "altup_router_norm", Some(il));
        let scaled = ctx.scale(normed, 1.0 / g.c.dims.n_embd as f32);
        let m = ctx.tanh(g.matmul(aw.router, scaled, "altup_router", Some(il)));
        g.name(m, "modalities", Some(il))
    }

    /// Each stream predicted as itself plus a mix of all, with coefficients from the router.
    fn predict(&self, streams: Tensor<'c>, aw: &AltUpLayerWeights, il: usize) -> Tensor<'c> {
        let (g, ctx, n) = (self.g, self.g.ctx, self.n);
        let modalities = self.modalities(self.slice(streams, self.active), aw, il);
        let coefs = g.matmul(aw.predict_coef, modalities, "all_coefs", Some(il));
        let b = coefs.shape()[1];
        let coefs = ctx.reshape(coefs, &[n, n, b]);
        // (n, n_embd, tokens) times each token's n × n mix, back to (n_embd, tokens, n).
        let by_stream = ctx.cont(ctx.permute(streams, [1, 2, 0, 3]));
        let mixed = ctx.mul_mat(by_stream, coefs);
        let mixed = ctx.cont(ctx.permute(mixed, [0, 2, 1, 3]));
        g.name(ctx.add(mixed, streams), "predictions", Some(il))
    }

    /// Every stream's prediction plus its share (1 + the router's coefficient) of the
    /// innovation: the layer's output `activated` minus the active prediction.
    fn correct(
        &self,
        predictions: Tensor<'c>,
        activated: Tensor<'c>,
        aw: &AltUpLayerWeights,
        il: usize,
    ) -> Tensor<'c> {
        let (g, ctx, n) = (self.g, self.g.ctx, self.n);
        let modalities = self.modalities(activated, aw, il);
        let innovation = ctx.sub(activated, self.slice(predictions, self.active));
        let innovation = g.name(innovation, "innovation", Some(il));
        let coefs = g.matmul(aw.correct_coef, modalities, "all_coefs", Some(il));
        let coefs = ctx.scale_bias(coefs, 1.0, 1.0);
        let [n_embd, b, ..] = activated.shape();
        let coefs = ctx.cont_3d(ctx.permute(coefs, [1, 0, 2, 3]), [1, b, n]);
        let innovation = ctx.repeat(innovation, [n_embd, b, n, 1]);
        let corrected = ctx.add(ctx.mul(innovation, coefs), predictions);
        g.name(corrected, "corrected", Some(il))
    }

    /// LAuReL: `h` plus its normed low-rank projection.
    fn laurel(&self, h: Tensor<'c>, aw: &AltUpLayerWeights, il: usize) -> Tensor<'c> {
        let g = self.g;
        let low = g.matmul(aw.laurel_l, h, "laurel_l", Some(il));
        let low = g.matmul(aw.laurel_r, low, "laurel_r", Some(il));
        let low = g.norm(low, aw.laurel_post_norm, "laurel_post_norm", Some(il));
        g.name(g.ctx.add(low, h), "laurel_out", Some(il))
    }
}

/// Activation sparsity: each row's values above mean + `std_mul` standard deviations (sample
/// deviation, n - 1), shifted down by that cut-off; the rest 0.
fn gaussian_top_k<'c>(ctx: &'c Context<'_>, x: Tensor<'c>, std_mul: f32) -> Tensor<'c> {
    let mean = ctx.mean(x);
    let n = x.shape()[0];
    let var = ctx.scale(
        ctx.sum_rows(ctx.sqr(ctx.sub(x, mean))),
        1.0 / (n as f32 - 1.0),
    );
    let cutoff = ctx.add(mean, ctx.scale(ctx.sqrt(var), std_mul));
    ctx.relu(ctx.sub(x, cutoff))
}
