//! The model's weights: ggml tensors over the GGUF's memory map, each checked against the
//! configuration before any graph is built, and laid out for ggml's CPU kernels as [`Repack`]
//! says.

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
        let (e, f) = (c.dims.n_embd as u64, c.dims.n_ff as u64);
        let q = (c.dims.n_head * c.dims.head_dim_k) as u64;
        let k = (c.dims.n_head_kv * c.dims.head_dim_k) as u64;
        let v = (c.dims.n_head_kv * c.dims.head_dim_v) as u64;
        let o = (c.dims.n_head * c.dims.head_dim_v) as u64;
        let dk = c.dims.head_dim_k as u64;
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
        let mut layers = Vec::with_capacity(c.dims.n_layer);
        for il in 0..c.dims.n_layer {
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
            .flat_map(|l| [l.wq, l.wk, l.wv, l.wo, l.ffn_gate, l.ffn_up, l.ffn_down])
            .collect();
        let matrices = match repack {
            Repack::Off => return Ok(()),
            Repack::All => {
                matrices.push(self.output);
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
