//! The memory plan: what the weights, the KV cache and the compute buffers will take, next to
//! what the machine has available.

use super::Config;
use crate::gguf::Gguf;

/// The dimensions the plan needs. Read from a validated [`Config`] for the models gemlet runs,
/// or from the standard metadata keys of any other architecture (for `inspect`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanDims {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    /// Positions each layer keeps at most (its sliding window), `None` for global layers.
    pub layer_window: Vec<Option<usize>>,
}

impl PlanDims {
    pub fn from_config(c: &Config) -> PlanDims {
        PlanDims {
            n_layer: c.n_layer,
            n_embd: c.n_embd,
            n_ff: c.n_ff,
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim_k: c.head_dim_k,
            head_dim_v: c.head_dim_v,
            n_vocab: c.n_vocab,
            n_ctx_train: c.n_ctx_train,
            layer_window: (0..c.n_layer)
                .map(|il| c.sliding_window.filter(|_| c.is_local(il)))
                .collect(),
        }
    }

    /// Dimensions from `{arch}.*` keys of any architecture (llama.cpp's key names), with
    /// llama.cpp's defaults; `None` when the basic keys are missing.
    pub fn from_metadata(g: &Gguf) -> Option<PlanDims> {
        let arch = g.architecture().ok()?;
        let u = |k: &str| g.get_u32(&format!("{arch}.{k}")).ok().map(|v| v as usize);
        let n_layer = u("block_count")?;
        let n_embd = u("embedding_length")?;
        let n_head = u("attention.head_count").filter(|&h| h > 0)?;
        let n_vocab = g
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .map(|v| v as usize)
            .or_else(|| g.get_array("tokenizer.ggml.tokens").ok().map(|a| a.len()))?;
        Some(PlanDims {
            n_layer,
            n_embd,
            n_ff: u("feed_forward_length").unwrap_or(4 * n_embd),
            n_head,
            n_head_kv: u("attention.head_count_kv").unwrap_or(n_head),
            head_dim_k: u("attention.key_length").unwrap_or(n_embd / n_head),
            head_dim_v: u("attention.value_length").unwrap_or(n_embd / n_head),
            n_vocab,
            n_ctx_train: u("context_length").unwrap_or(0),
            layer_window: vec![None; n_layer],
        })
    }

    /// K and V cache bytes for `n_ctx` positions filled in batches of `n_batch`, at
    /// `bytes_per_value` (2 for F16); local layers keep their window plus one batch.
    pub fn kv_cache_bytes(&self, n_ctx: usize, n_batch: usize, bytes_per_value: usize) -> u64 {
        let per_pos =
            (self.n_head_kv * (self.head_dim_k + self.head_dim_v) * bytes_per_value) as u64;
        self.layer_window
            .iter()
            .map(|w| w.map_or(n_ctx, |w| (w + n_batch).min(n_ctx)) as u64 * per_pos)
            .sum()
    }

    /// An estimate of the compute buffers for a batch of `n_batch` tokens: the activations that
    /// are alive at once inside one block (residual, normed input, Q/K/V, attention output, the
    /// three FFN intermediates) in f32, plus one row of logits. Buffers are reused from block to
    /// block, so this does not grow with depth; flash attention keeps the scores per thread.
    pub fn compute_bytes(&self, n_batch: usize) -> u64 {
        let q = self.n_head * self.head_dim_k;
        let kv = self.n_head_kv * (self.head_dim_k + self.head_dim_v);
        let attn_out = self.n_head * self.head_dim_v;
        let per_token = 3 * self.n_embd + q + kv + attn_out + 3 * self.n_ff;
        (4 * n_batch * per_token + 4 * self.n_vocab) as u64
    }
}

/// Memory one session of a model will take.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    pub context: usize,
    pub batch: usize,
    /// Weight bytes, mapped from the file (not copied).
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
    /// `MemAvailable` of this machine, when known.
    pub available_bytes: Option<u64>,
}

impl MemoryPlan {
    /// A plan for a context of `n_ctx` (capped at the model's training context) with an F16
    /// KV cache and batches of `n_batch`.
    pub fn new(dims: &PlanDims, weights_bytes: u64, n_ctx: usize, n_batch: usize) -> MemoryPlan {
        let context = if dims.n_ctx_train > 0 {
            n_ctx.min(dims.n_ctx_train)
        } else {
            n_ctx
        };
        let batch = n_batch.min(context).max(1);
        let kv_cache_bytes = dims.kv_cache_bytes(context, batch, 2);
        let compute_bytes = dims.compute_bytes(batch);
        MemoryPlan {
            context,
            batch,
            weights_bytes,
            kv_cache_bytes,
            compute_bytes,
            total_bytes: weights_bytes + kv_cache_bytes + compute_bytes,
            available_bytes: available_memory(),
        }
    }

    /// Whether the plan fits in available memory (true when that is unknown).
    pub fn fits(&self) -> bool {
        self.available_bytes.is_none_or(|a| self.total_bytes <= a)
    }
}

/// `MemAvailable` from /proc/meminfo (Linux), in bytes.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemma3_270m() -> PlanDims {
        PlanDims {
            n_layer: 18,
            n_embd: 640,
            n_ff: 2048,
            n_head: 4,
            n_head_kv: 1,
            head_dim_k: 256,
            head_dim_v: 256,
            n_vocab: 262_144,
            n_ctx_train: 32_768,
            layer_window: (0..18).map(|il| (il % 6 < 5).then_some(512)).collect(),
        }
    }

    #[test]
    fn kv_cache_keeps_only_the_window_on_local_layers() {
        let d = gemma3_270m();
        // 3 global layers x 4096 positions + 15 local layers x (512 + batch 512), 1 KV head x
        // (256 + 256) x 2 B.
        let per_pos = 1024;
        assert_eq!(
            d.kv_cache_bytes(4096, 512, 2),
            (3 * 4096 + 15 * 1024) * per_pos
        );
        assert_eq!(
            d.kv_cache_bytes(4096, 1, 2),
            (3 * 4096 + 15 * 513) * per_pos
        );
        assert_eq!(d.kv_cache_bytes(100, 512, 2), 18 * 100 * per_pos);
    }

    #[test]
    fn plan_caps_context_and_adds_up() {
        let p = MemoryPlan::new(&gemma3_270m(), 1000, 1 << 20, 512);
        assert_eq!(p.context, 32_768);
        assert_eq!(p.total_bytes, 1000 + p.kv_cache_bytes + p.compute_bytes);
    }
}
