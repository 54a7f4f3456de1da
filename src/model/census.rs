//! What a GGUF holds, counted from its tensor table alone: parameters, bytes by type,
//! parameters by component, and the tensors of each block. Works for any architecture that
//! uses llama.cpp's tensor names (`token_embd`, `blk.N.attn_q`, `output`, ...).

use crate::ggml::Type;
use crate::gguf::{Gguf, TensorInfo};
use std::collections::BTreeMap;

/// The parts of a transformer a parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    Embedding,
    Attention,
    Ffn,
    Norm,
    Output,
    Other,
}

impl Component {
    pub const ALL: [Component; 6] = [
        Component::Embedding,
        Component::Attention,
        Component::Ffn,
        Component::Norm,
        Component::Output,
        Component::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Embedding => "embedding",
            Component::Attention => "attention",
            Component::Ffn => "ffn",
            Component::Norm => "norm",
            Component::Output => "output",
            Component::Other => "other",
        }
    }

    /// Classifies a tensor by its llama.cpp name.
    pub fn of(name: &str) -> Component {
        let base = name
            .strip_suffix(".weight")
            .or_else(|| name.strip_suffix(".bias"))
            .unwrap_or(name);
        let leaf = base.rsplit('.').next().unwrap_or(base);
        if leaf.contains("norm") {
            Component::Norm
        } else if base == "token_embd" || base == "position_embd" || base == "token_types" {
            Component::Embedding
        } else if base == "output" {
            Component::Output
        } else if leaf.starts_with("attn_") {
            Component::Attention
        } else if leaf.starts_with("ffn_") {
            Component::Ffn
        } else {
            Component::Other
        }
    }
}

/// One tensor of a block, named without its `blk.N.` prefix and `.weight` suffix.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: Type,
}

/// The tensors of `blk.N`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub index: usize,
    pub tensors: Vec<BlockTensor>,
    pub params: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Census {
    pub tensor_count: usize,
    pub parameter_count: u64,
    pub weight_bytes: u64,
    pub bytes_by_type: BTreeMap<Type, u64>,
    pub params_by_component: BTreeMap<Component, u64>,
    pub blocks: Vec<Block>,
}

impl Census {
    pub fn of(g: &Gguf) -> Census {
        let mut c = Census {
            tensor_count: g.tensors().len(),
            parameter_count: 0,
            weight_bytes: 0,
            bytes_by_type: BTreeMap::new(),
            params_by_component: Component::ALL.iter().map(|&k| (k, 0)).collect(),
            blocks: Vec::new(),
        };
        let mut blocks: BTreeMap<usize, Block> = BTreeMap::new();
        for t in g.tensors() {
            let n = t.n_elements();
            c.parameter_count += n;
            c.weight_bytes += t.n_bytes;
            *c.bytes_by_type.entry(t.ty).or_default() += t.n_bytes;
            *c.params_by_component
                .entry(Component::of(&t.name))
                .or_default() += n;
            if let Some((index, short)) = block_of(t) {
                let b = blocks.entry(index).or_insert_with(|| Block {
                    index,
                    tensors: Vec::new(),
                    params: 0,
                    bytes: 0,
                });
                b.params += n;
                b.bytes += t.n_bytes;
                b.tensors.push(BlockTensor {
                    name: short.to_string(),
                    dims: t.dims.clone(),
                    ty: t.ty,
                });
            }
        }
        c.blocks = blocks.into_values().collect();
        c
    }
}

/// `blk.12.attn_q.weight` → (12, "attn_q").
fn block_of(t: &TensorInfo) -> Option<(usize, &str)> {
    let rest = t.name.strip_prefix("blk.")?;
    let (index, short) = rest.split_once('.')?;
    let index = index.parse().ok()?;
    Some((index, short.strip_suffix(".weight").unwrap_or(short)))
}

#[cfg(test)]
mod tests {
    use super::Component::{self, *};

    #[test]
    fn components_by_name() {
        for (name, want) in [
            ("token_embd.weight", Embedding),
            ("output.weight", Output),
            ("output_norm.weight", Norm),
            ("blk.3.attn_q.weight", Attention),
            ("blk.3.attn_output.weight", Attention),
            ("blk.3.attn_q_norm.weight", Norm),
            ("blk.3.attn_norm.weight", Norm),
            ("blk.3.post_attention_norm.weight", Norm),
            ("blk.3.ffn_down.weight", Ffn),
            ("blk.3.post_ffw_norm.weight", Norm),
            ("rope_freqs.weight", Other),
        ] {
            assert_eq!(Component::of(name), want, "{name}");
        }
    }
}
