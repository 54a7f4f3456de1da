//! The model's weights: ggml tensors over the GGUF's memory map, each checked against the
//! configuration before any graph is built, and laid out for ggml's CPU kernels as [`Repack`]
//! says.

use super::config::{Arch, LayerKind};
use super::{Config, ModelError, Result};
use crate::ggml::{Context, TensorId, Type};
use crate::gguf::Gguf;

/// How the weight matrices meet ggml's CPU kernels. For some types, on some CPUs, ggml has an
/// interleaved ("repacked") layout whose matrix-matrix kernels run prompts faster than the
/// plain ones; which matrices qualify, ggml is asked at load. Repacked matrices are moved out
/// of the map and the map's pages under them given back, so memory stays where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Repack {
    /// Every weight used from the map as it is (`--no-repack`).
    Off,
    /// The default: the matrices of types whose repacked kernels are faster for single tokens
    /// too (Q4_0, IQ4_NL: prompts ~20% faster, generation no slower) are repacked. K-quants
    /// stay in the map: their repacked one-token kernel is slower than the plain dot product,
    /// and a repacked copy for prompts alone did not pay for its memory in paired rounds
    /// (the README's measurements).
    #[default]
    Auto,
    /// Everything ggml can repack, the tied output head included (llama.cpp's default,
    /// `--repack`).
    All,
}

/// Whether a type's repacked one-token kernel loses to its plain dot product, so that
/// [`Repack::Auto`] leaves its matrices in the map.
fn slower_repacked(ty: Type) -> bool {
    matches!(
        ty,
        Type::Q2_K | Type::Q3_K | Type::Q4_K | Type::Q5_K | Type::Q6_K
    )
}

/// One block's weights. Optional ones exist only in some Gemma versions.
pub struct LayerWeights {
    pub attn_norm: TensorId,
    pub qkv: Qkv,
    pub wo: TensorId,
    pub q_norm: Option<TensorId>,
    /// Gemma 3/4's key norm, in layers with a cache of their own.
    pub k_norm: Option<TensorId>,
    pub post_attn_norm: Option<TensorId>,
    pub ffn_norm: TensorId,
    pub ffn_gate: TensorId,
    pub ffn_up: TensorId,
    pub ffn_down: TensorId,
    pub post_ffn_norm: Option<TensorId>,
    /// Gemma 4's experts beside the dense MLP (26B-A4B).
    pub experts: Option<ExpertWeights>,
    /// Gemma 4's per-layer embedding block.
    pub ple: Option<PleLayerWeights>,
    /// Gemma 4's scalar the layer's output is multiplied by (`layer_output_scale`).
    pub out_scale: Option<TensorId>,
    /// Gemma 3n's AltUp router and coefficients, and its LAuReL block.
    pub altup: Option<AltUpLayerWeights>,
}

/// A Gemma 3n layer's AltUp weights (router over the active stream, prediction and
/// correction coefficients) and LAuReL's low-rank residual.
pub struct AltUpLayerWeights {
    pub router: TensorId,
    pub router_norm: TensorId,
    /// n_inputs × n_inputs² : each stream's prediction as a mix of all, per router output.
    pub predict_coef: TensorId,
    /// n_inputs × n_inputs: each stream's share of the layer's innovation.
    pub correct_coef: TensorId,
    /// Scales the corrected active stream before it gates the per-layer input.
    pub correct_scale: TensorId,
    pub laurel_l: TensorId,
    pub laurel_r: TensorId,
    pub laurel_post_norm: TensorId,
}

/// A layer's query, key and value projections.
pub enum Qkv {
    /// `attn_q`, and in a layer with a cache of its own `attn_k` and `attn_v` (`None` in Gemma
    /// 4 layers whose values are their keys).
    Separate {
        wq: TensorId,
        wk: Option<TensorId>,
        wv: Option<TensorId>,
    },
    /// `attn_qkv`: one matrix whose output rows are the queries, the keys, then the values.
    Fused(TensorId),
}

/// A layer's mixture of experts: the router (on the residual stream, scaled per channel), the
/// norms around the experts and around the dense MLP beside them, and the expert matrices
/// (n_embd × n_ff × n_expert), each optionally scaled per expert.
pub struct ExpertWeights {
    pub router: TensorId,
    pub router_scale: TensorId,
    /// `pre_ffw_norm_2`: the experts' input norm (the dense MLP keeps `ffn_norm`).
    pub pre_norm: TensorId,
    /// `post_ffw_norm_1`: the dense MLP's output norm.
    pub post_norm_mlp: TensorId,
    /// `post_ffw_norm_2`: the experts' output norm.
    pub post_norm: TensorId,
    pub gate_up: ExpertGateUp,
    pub down: Scaled,
}

/// The experts' gate and up projections.
pub enum ExpertGateUp {
    /// `ffn_gate_up_exps`: gate rows then up rows in one matrix per expert.
    Fused(Scaled),
    Separate {
        gate: Scaled,
        up: Scaled,
    },
}

/// Expert matrices and their optional per-expert scale (`.scale`, n_expert values).
#[derive(Clone, Copy)]
pub struct Scaled {
    pub w: TensorId,
    pub scale: Option<TensorId>,
}

/// A layer's part of the per-layer embeddings: the gate from the hidden state, the projection
/// back to it, and its norm.
pub struct PleLayerWeights {
    pub inp_gate: TensorId,
    pub proj: TensorId,
    pub post_norm: TensorId,
}

/// The per-layer embedding inputs: a row of `token_embd` per token holding every layer's
/// slice (read a row at a time from the map, never copied), and the projection of the
/// embedding that is added to it.
pub struct PleWeights {
    pub token_embd: TensorId,
    pub model_proj: TensorId,
    pub proj_norm: TensorId,
}

pub struct Weights<'m> {
    /// Metadata-only context whose tensors borrow the map.
    pub ctx: Context<'m>,
    pub token_embd: TensorId,
    pub output_norm: TensorId,
    /// `output.weight`, or the token embedding when the output is tied.
    pub output: TensorId,
    pub layers: Vec<LayerWeights>,
    /// Gemma 4's per-layer embedding inputs.
    pub ple: Option<PleWeights>,
    /// Frequency factors of the global layers' rope (Gemma 4's proportional rope).
    pub rope_freqs: Option<TensorId>,
    /// EmbeddingGemma's projections after pooling: `dense_2` (n_embd → n_dense) and
    /// `dense_3` (back to n_embd).
    pub dense: Option<(TensorId, TensorId)>,
    /// Gemma 3n's projections of the embedding into the other AltUp streams and back
    /// (`altup_proj`, `altup_unembd_proj`: n_embd × n_embd × (n_inputs - 1)).
    pub altup: Option<(TensorId, TensorId)>,
    /// Matrices repacked and their bytes.
    pub repacked: (usize, usize),
    tied_output: bool,
}

impl<'m> Weights<'m> {
    /// Every tensor the config needs, over the map, its name and shape checked. `repack` only
    /// decides whether a tied output head gets a descriptor of its own (with [`Repack::All`],
    /// so that it can be repacked apart from the embedding); [`Weights::repack`] does the rest.
    pub fn bind(g: &'m Gguf, c: &Config, repack: Repack) -> Result<Weights<'m>> {
        let own_head = repack == Repack::All;
        // Room for a second descriptor of every tensor (batch copies), and one more for a
        // tied output head that gets its own (repacked) one.
        let ctx = Context::metadata_only(2 * g.tensors().len() + 2, 0)?;
        let e = c.dims.n_embd as u64;
        let bind = |name: &str, dims: &[u64]| -> Result<TensorId> {
            let info = g
                .tensor(name)
                .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
            if info.dims != dims {
                return Err(ModelError::Shape {
                    tensor: name.to_string(),
                    expected: dims.to_vec(),
                    found: info.dims.clone(),
                });
            }
            // Norms are multiplied element-wise with F32 activations, which ggml's binary ops
            // take only in F32; matrices must have a CPU kernel.
            let (ok, expected) = if dims.len() == 1 {
                (info.ty == Type::F32, "f32 (a norm)")
            } else {
                (
                    info.ty.has_cpu_matmul(),
                    "a type ggml's CPU kernels multiply (f32, f16, bf16, q4_0, q8_0, the K- and IQ-quants, ...)",
                )
            };
            if !ok {
                return Err(ModelError::TensorType {
                    tensor: name.to_string(),
                    found: info.ty,
                    expected,
                });
            }
            let t = ctx.tensor_from_bytes(info.ty, &info.shape(), name, g.tensor_data(info))?;
            Ok(ctx.id_of(t))
        };
        let opt = |present: bool, name: &str, dims: &[u64]| -> Result<Option<TensorId>> {
            present.then(|| bind(name, dims)).transpose()
        };

        let token_embd = bind("token_embd.weight", &[e, c.dims.n_vocab as u64])?;
        let output_norm = bind("output_norm.weight", &[e])?;
        let output = if c.tied_output && own_head {
            // A second descriptor over the same bytes, as llama.cpp's duplicated tensor: the
            // head may be repacked while the embedding lookup (get_rows) reads the original.
            let info = g.tensor("token_embd.weight").expect("bound above");
            let t = ctx.tensor_from_bytes(
                info.ty,
                &info.shape(),
                "output.weight",
                g.tensor_data(info),
            )?;
            ctx.id_of(t)
        } else if c.tied_output {
            token_embd
        } else {
            bind("output.weight", &[e, c.dims.n_vocab as u64])?
        };
        let gemma4 = c.arch == Arch::Gemma4;
        let (n_layer, p) = (c.dims.n_layer as u64, c.n_embd_per_layer as u64);
        let ple = (p > 0)
            .then(|| -> Result<PleWeights> {
                Ok(PleWeights {
                    token_embd: bind(
                        super::memory::RowTable::TENSOR,
                        &[p * n_layer, c.dims.n_vocab as u64],
                    )?,
                    model_proj: bind("per_layer_model_proj.weight", &[e, p * n_layer])?,
                    proj_norm: bind("per_layer_proj_norm.weight", &[p])?,
                })
            })
            .transpose()?;
        let has_global = c.layer_kinds.contains(&LayerKind::Global);
        // Gemma 4's global layers may rotate by frequency factors (one table for them all).
        let rope_freqs = match g.tensor("rope_freqs.weight") {
            Some(_) if gemma4 && has_global => {
                let half = c.head_dims(LayerKind::Global).0 as u64 / 2;
                Some(bind("rope_freqs.weight", &[half])?)
            }
            _ => None,
        };
        let dense = c
            .embedding
            .as_ref()
            .and_then(|h| h.n_dense)
            .map(|d| -> Result<(TensorId, TensorId)> {
                Ok((
                    bind("dense_2.weight", &[e, d as u64])?,
                    bind("dense_3.weight", &[d as u64, e])?,
                ))
            })
            .transpose()?;
        let altup = c
            .altup
            .as_ref()
            .map(|a| -> Result<(TensorId, TensorId)> {
                let dims = [e, e, a.n_inputs as u64 - 1];
                Ok((
                    bind("altup_proj.weight", &dims)?,
                    bind("altup_unembd_proj.weight", &dims)?,
                ))
            })
            .transpose()?;
        let mut layers = Vec::with_capacity(c.dims.n_layer);
        for il in 0..c.dims.n_layer {
            let n = |t: &str| format!("blk.{il}.{t}.weight");
            let present = |t: &str| g.tensor(&n(t)).is_some();
            let (dk, dv) = c.head_dims(c.kind(il));
            let (dk, dv) = (dk as u64, dv as u64);
            let (h, h_kv) = (c.dims.n_head as u64, c.n_head_kv(c.kind(il)) as u64);
            let f = c.n_ff(il) as u64;
            let own_kv = il < c.n_layer_kv;
            let qkv = if gemma4 && present("attn_qkv") {
                Qkv::Fused(bind(&n("attn_qkv"), &[e, h * dk + h_kv * (dk + dv)])?)
            } else {
                Qkv::Separate {
                    wq: bind(&n("attn_q"), &[e, h * dk])?,
                    wk: opt(own_kv, &n("attn_k"), &[e, h_kv * dk])?,
                    // Gemma 4 uses the keys as values where a layer has no attn_v.
                    wv: opt(
                        own_kv && (!gemma4 || present("attn_v")),
                        &n("attn_v"),
                        &[e, h_kv * dv],
                    )?,
                }
            };
            let experts = c
                .experts
                .as_ref()
                .filter(|_| c.has_experts(il))
                .map(|x| -> Result<ExpertWeights> {
                    let (ne, fx) = (x.n_expert as u64, x.n_ff as u64);
                    let scaled = |t: &str, dims: &[u64]| -> Result<Scaled> {
                        let scale = format!("blk.{il}.{t}.scale");
                        Ok(Scaled {
                            w: bind(&n(t), dims)?,
                            scale: opt(g.tensor(&scale).is_some(), &scale, &[ne])?,
                        })
                    };
                    let gate_up = if present("ffn_gate_up_exps") {
                        ExpertGateUp::Fused(
                            bind(&n("ffn_gate_up_exps"), &[e, 2 * fx, ne])
                                .map(|w| Scaled { w, scale: None })?,
                        )
                    } else {
                        ExpertGateUp::Separate {
                            gate: scaled("ffn_gate_exps", &[e, fx, ne])?,
                            up: scaled("ffn_up_exps", &[e, fx, ne])?,
                        }
                    };
                    Ok(ExpertWeights {
                        router: bind(&n("ffn_gate_inp"), &[e, ne])?,
                        router_scale: bind(&format!("blk.{il}.ffn_gate_inp.scale"), &[e])?,
                        pre_norm: bind(&n("pre_ffw_norm_2"), &[e])?,
                        post_norm_mlp: bind(&n("post_ffw_norm_1"), &[e])?,
                        post_norm: bind(&n("post_ffw_norm_2"), &[e])?,
                        gate_up,
                        down: scaled("ffn_down_exps", &[fx, e, ne])?,
                    })
                })
                .transpose()?;
            layers.push(LayerWeights {
                attn_norm: bind(&n("attn_norm"), &[e])?,
                qkv,
                wo: bind(&n("attn_output"), &[h * dv, e])?,
                q_norm: opt(c.qk_norm, &n("attn_q_norm"), &[dk])?,
                k_norm: opt(c.qk_norm && own_kv, &n("attn_k_norm"), &[dk])?,
                post_attn_norm: opt(c.post_norms, &n("post_attention_norm"), &[e])?,
                ffn_norm: bind(&n("ffn_norm"), &[e])?,
                ffn_gate: bind(&n("ffn_gate"), &[e, f])?,
                ffn_up: bind(&n("ffn_up"), &[e, f])?,
                ffn_down: bind(&n("ffn_down"), &[f, e])?,
                post_ffn_norm: opt(c.post_norms, &n("post_ffw_norm"), &[e])?,
                experts,
                ple: (p > 0)
                    .then(|| -> Result<PleLayerWeights> {
                        Ok(PleLayerWeights {
                            inp_gate: bind(&n("inp_gate"), &[e, p])?,
                            proj: bind(&n("proj"), &[p, e])?,
                            post_norm: bind(&n("post_norm"), &[e])?,
                        })
                    })
                    .transpose()?,
                out_scale: opt(
                    gemma4 && present("layer_output_scale"),
                    &n("layer_output_scale"),
                    &[1],
                )?,
                altup: c
                    .altup
                    .as_ref()
                    .map(|a| -> Result<AltUpLayerWeights> {
                        let (k, r) = (a.n_inputs as u64, a.laurel_rank as u64);
                        Ok(AltUpLayerWeights {
                            router: bind(&n("altup_router"), &[e, k])?,
                            router_norm: bind(&n("altup_router_norm"), &[e])?,
                            predict_coef: bind(&n("altup_predict_coef"), &[k, k * k])?,
                            correct_coef: bind(&n("altup_correct_coef"), &[k, k])?,
                            correct_scale: bind(&n("altup_correct_scale"), &[e])?,
                            laurel_l: bind(&n("laurel_l"), &[e, r])?,
                            laurel_r: bind(&n("laurel_r"), &[r, e])?,
                            laurel_post_norm: bind(&n("laurel_post_norm"), &[e])?,
                        })
                    })
                    .transpose()?,
            });
        }
        Ok(Weights {
            ctx,
            token_embd,
            output_norm,
            output,
            layers,
            ple,
            rope_freqs,
            dense,
            altup,
            repacked: (0, 0),
            tied_output: c.tied_output,
        })
    }

    /// Repacks the matrices `repack` asks for into ggml's interleaved layout and gives the
    /// map's pages under each back (the file still holds them).
    pub fn repack(&mut self, g: &'m Gguf, repack: Repack) -> Result<()> {
        let mut matrices: Vec<TensorId> = self
            .layers
            .iter()
            .flat_map(|l| {
                let qkv = match l.qkv {
                    Qkv::Separate { wq, wk, wv } => [Some(wq), wk, wv],
                    Qkv::Fused(w) => [Some(w), None, None],
                };
                // Expert matrices stay in the map (but for --repack): a token reads only its
                // experts' pages.
                // Gemma 4/3n's per-layer embedding blocks, Gemma 3n's LAuReL and router.
                let ple = l.ple.as_ref().map(|p| [p.inp_gate, p.proj]);
                let altup = l.altup.as_ref().map(|a| [a.laurel_l, a.laurel_r, a.router]);
                [l.wo, l.ffn_gate, l.ffn_up, l.ffn_down]
                    .into_iter()
                    .chain(qkv.into_iter().flatten())
                    .chain(ple.into_iter().flatten())
                    .chain(altup.into_iter().flatten())
            })
            .collect();
        // The matrices outside the layers that multiply every token (not the tables read a
        // row per token, nor Gemma 3n's 3-D AltUp projections, which ggml's repacked kernels
        // do not take).
        matrices.extend(self.ple.as_ref().map(|p| p.model_proj));
        matrices.extend(self.dense.iter().flat_map(|&(d2, d3)| [d2, d3]));
        let matrices = match repack {
            Repack::Off => return Ok(()),
            Repack::All => {
                matrices.push(self.output);
                // As llama.cpp: the experts too (by default they stay in the map, where a
                // token reads only its experts' pages; a repacked copy holds them all).
                matrices.extend(
                    self.layers
                        .iter()
                        .filter_map(|l| l.experts.as_ref())
                        .flat_map(|x| {
                            let gate_up = match x.gate_up {
                                ExpertGateUp::Fused(s) => [Some(s.w), None],
                                ExpertGateUp::Separate { gate, up } => [Some(gate.w), Some(up.w)],
                            };
                            gate_up.into_iter().flatten().chain([x.down.w])
                        }),
                );
                matrices
            }
            // The head multiplies one row per prompt: it stays as it is.
            Repack::Auto => matrices
                .into_iter()
                .filter(|&id| !slower_repacked(self.ctx.resolve(id).ty()))
                .collect(),
        };
        let ctx = &self.ctx;
        let mut bytes = 0;
        let (output, tied_output) = (self.output, self.tied_output);
        let moved = ctx.repack(&matrices, |id| {
            bytes += ctx.resolve(id).n_bytes();
            // A tied head's bytes are the embedding's: the lookup reads back only the rows of
            // the tokens it is given.
            let name = if id == output && tied_output {
                "token_embd.weight".to_string()
            } else {
                ctx.resolve(id).name()
            };
            let info = g.tensor(&name).expect("every bound tensor is in the file");
            g.release(g.tensor_data(info));
        })?;
        self.repacked = (moved.len(), bytes);
        Ok(())
    }
}
