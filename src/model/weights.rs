//! The model's weights: ggml tensors over the GGUF's memory map, each checked against the
//! configuration before any graph is built. They are never copied, unless asked to be repacked
//! (`--repack`): then the matrices ggml can interleave for its kernels move to a buffer of
//! their own and the map's pages under them are given back, so memory stays the same.

use super::{Config, ModelError, Result};
use crate::ggml::{Context, TensorId};
use crate::gguf::Gguf;

/// One block's weights. Optional ones exist only in some Gemma versions.
pub struct LayerWeights {
    pub attn_norm: TensorId,
    pub wq: TensorId,
    pub wk: TensorId,
    pub wv: TensorId,
    pub wo: TensorId,
    pub q_norm: Option<TensorId>,
    pub k_norm: Option<TensorId>,
    pub post_attn_norm: Option<TensorId>,
    pub ffn_norm: TensorId,
    pub ffn_gate: TensorId,
    pub ffn_up: TensorId,
    pub ffn_down: TensorId,
    pub post_ffn_norm: Option<TensorId>,
}

pub struct Weights<'m> {
    /// Metadata-only context whose tensors borrow the map.
    pub ctx: Context<'m>,
    pub token_embd: TensorId,
    pub output_norm: TensorId,
    /// `output.weight`, or the token embedding when the output is tied.
    pub output: TensorId,
    pub layers: Vec<LayerWeights>,
    /// Matrices repacked and their bytes (zero unless asked for).
    pub repacked: (usize, usize),
}

impl<'m> Weights<'m> {
    /// Binds every tensor the config needs, checking names and shapes; with `repack`, moves
    /// the matrices ggml can repack on this CPU into its interleaved layout.
    pub fn bind(g: &'m Gguf, c: &Config, repack: bool) -> Result<Weights<'m>> {
        // One more descriptor for a tied output head that gets its own (repacked) copy.
        let ctx = Context::metadata_only(g.tensors().len() + 2, 0)?;
        let (e, f) = (c.n_embd as u64, c.n_ff as u64);
        let q = (c.n_head * c.head_dim_k) as u64;
        let k = (c.n_head_kv * c.head_dim_k) as u64;
        let v = (c.n_head_kv * c.head_dim_v) as u64;
        let o = (c.n_head * c.head_dim_v) as u64;
        let dk = c.head_dim_k as u64;
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
            let t = ctx.tensor_from_bytes(info.ty, &info.shape(), name, g.tensor_data(info))?;
            Ok(ctx.id_of(t))
        };
        let opt = |present: bool, name: &str, dims: &[u64]| -> Result<Option<TensorId>> {
            present.then(|| bind(name, dims)).transpose()
        };

        let token_embd = bind("token_embd.weight", &[e, c.n_vocab as u64])?;
        let output_norm = bind("output_norm.weight", &[e])?;
        let output = if c.tied_output && repack {
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
            bind("output.weight", &[e, c.n_vocab as u64])?
        };
        let mut layers = Vec::with_capacity(c.n_layer);
        for il in 0..c.n_layer {
            let n = |t: &str| format!("blk.{il}.{t}.weight");
            layers.push(LayerWeights {
                attn_norm: bind(&n("attn_norm"), &[e])?,
                wq: bind(&n("attn_q"), &[e, q])?,
                wk: bind(&n("attn_k"), &[e, k])?,
                wv: bind(&n("attn_v"), &[e, v])?,
                wo: bind(&n("attn_output"), &[o, e])?,
                q_norm: opt(c.qk_norm, &n("attn_q_norm"), &[dk])?,
                k_norm: opt(c.qk_norm, &n("attn_k_norm"), &[dk])?,
                post_attn_norm: opt(c.post_norms, &n("post_attention_norm"), &[e])?,
                ffn_norm: bind(&n("ffn_norm"), &[e])?,
                ffn_gate: bind(&n("ffn_gate"), &[e, f])?,
                ffn_up: bind(&n("ffn_up"), &[e, f])?,
                ffn_down: bind(&n("ffn_down"), &[f, e])?,
                post_ffn_norm: opt(c.post_norms, &n("post_ffw_norm"), &[e])?,
            });
        }
        let repacked = if repack {
            let mut matrices: Vec<TensorId> = layers
                .iter()
                .flat_map(|l| [l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down])
                .collect();
            matrices.push(output);
            let mut bytes = 0;
            let moved = ctx.repack(&matrices, |id| {
                // A tied head's bytes are the embedding's: the lookup reads back only the rows
                // of the tokens it is given.
                let name = if id == output && c.tied_output {
                    "token_embd.weight".to_string()
                } else {
                    ctx.resolve(id).name()
                };
                let info = g.tensor(&name).expect("every bound tensor is in the file");
                g.release(g.tensor_data(info));
                bytes += info.n_bytes as usize;
            })?;
            (moved.len(), bytes)
        } else {
            (0, 0)
        };
        Ok(Weights {
            ctx,
            token_embd,
            output_norm,
            output,
            layers,
            repacked,
        })
    }
}
