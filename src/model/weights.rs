//! The model's weights: ggml tensors over the GGUF's memory map (never copied), each checked
//! against the configuration before any graph is built.

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
}

impl<'m> Weights<'m> {
    /// Binds every tensor the config needs, checking names and shapes.
    pub fn bind(g: &'m Gguf, c: &Config) -> Result<Weights<'m>> {
        let ctx = Context::metadata_only(g.tensors().len() + 1, 0)?;
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
        let output = if c.tied_output {
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
        Ok(Weights {
            ctx,
            token_embd,
            output_norm,
            output,
            layers,
        })
    }
}
