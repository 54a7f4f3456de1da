//! The memory plan: what the weights, the KV cache and the compute buffers will take, next to
//! what the machine has available.

use super::kv_cache::CacheParams;
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

    /// K and V cache bytes for `n_ctx` positions filled in batches of `n_batch`, in the cache's
    /// types; local layers keep their window plus one batch (unless `swa_full`).
    pub fn kv_cache_bytes(&self, n_ctx: usize, n_batch: usize, cache: &CacheParams) -> u64 {
        let head = |ty: crate::ggml::Type, d: usize| ty.row_bytes(d as u64).unwrap_or(2 * d as u64);
        let per_pos = self.n_head_kv as u64
            * (head(cache.type_k, self.head_dim_k) + head(cache.type_v, self.head_dim_v));
        self.layer_window
            .iter()
            .map(|w| match w {
                Some(w) if !cache.swa_full => (w + n_batch).min(n_ctx),
                _ => n_ctx,
            } as u64
                * per_pos)
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
    pub cache: CacheParams,
    /// Weight bytes, mapped from the file (not copied).
    pub weights_bytes: u64,
    /// Repacked copies of matrices that prompts use beside the mapped ones.
    pub repack_bytes: u64,
    pub kv_cache_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
    /// `MemAvailable` of this machine, when known.
    pub available_bytes: Option<u64>,
}

impl MemoryPlan {
    /// A plan for a context of `n_ctx` (capped at the model's training context) with a KV
    /// cache of `cache`'s types and batches of `n_batch`.
    pub fn new(
        dims: &PlanDims,
        weights_bytes: u64,
        n_ctx: usize,
        n_batch: usize,
        cache: CacheParams,
    ) -> MemoryPlan {
        let context = if dims.n_ctx_train > 0 {
            n_ctx.min(dims.n_ctx_train)
        } else {
            n_ctx
        };
        let batch = n_batch.min(context).max(1);
        let kv_cache_bytes = dims.kv_cache_bytes(context, batch, &cache);
        let compute_bytes = dims.compute_bytes(batch);
        MemoryPlan {
            context,
            batch,
            cache,
            weights_bytes,
            repack_bytes: 0,
            kv_cache_bytes,
            compute_bytes,
            total_bytes: weights_bytes + kv_cache_bytes + compute_bytes,
            available_bytes: available_memory(),
        }
    }

    /// The plan with `bytes` of repacked copies beside the weights.
    pub fn with_repack_copies(mut self, bytes: u64) -> MemoryPlan {
        self.total_bytes = self.total_bytes - self.repack_bytes + bytes;
        self.repack_bytes = bytes;
        self
    }

    /// Whether the plan fits in available memory (true when that is unknown).
    pub fn fits(&self) -> bool {
        self.available_bytes.is_none_or(|a| self.total_bytes <= a)
    }

    /// Why a session of this plan is refused: the numbers, and what to change.
    pub fn refusal(&self) -> String {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        format!(
            "not enough memory: weights {}{} + KV cache {} (context {}, {}/{}) + compute ~{} = {}, \
             but only {} is available; use a smaller -c, a quantized cache (-ctk q8_0 -ctv q8_0) \
             or a smaller model",
            mib(self.weights_bytes),
            if self.repack_bytes > 0 {
                format!(" + repacked copies {} (--no-repack: none)", mib(self.repack_bytes))
            } else {
                String::new()
            },
            mib(self.kv_cache_bytes),
            self.context,
            self.cache.type_k,
            self.cache.type_v,
            mib(self.compute_bytes),
            mib(self.total_bytes),
            mib(self.available_bytes.unwrap_or(0)),
        )
    }
}

/// Memory available to this process, in bytes: `MemAvailable` from /proc/meminfo, or less when
/// the process's cgroup (a container, a systemd slice) sets a lower limit.
/// `GEMLET_MEMORY_LIMIT` (bytes, or with a K/M/G suffix) sets a budget below both.
pub fn available_memory() -> Option<u64> {
    let limit = std::env::var("GEMLET_MEMORY_LIMIT")
        .ok()
        .and_then(|v| parse_size(&v));
    [meminfo_available(), cgroup_headroom(), limit]
        .into_iter()
        .flatten()
        .min()
}

/// "123", "64K", "512M", "2G" (powers of 1024).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// cgroup v2: `memory.max` minus `memory.current` of this process's cgroup.
fn cgroup_headroom() -> Option<u64> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max" = no limit
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

fn meminfo_available() -> Option<u64> {
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
        let f16 = CacheParams::default();
        assert_eq!(
            d.kv_cache_bytes(4096, 512, &f16),
            (3 * 4096 + 15 * 1024) * per_pos
        );
        assert_eq!(
            d.kv_cache_bytes(4096, 1, &f16),
            (3 * 4096 + 15 * 513) * per_pos
        );
        assert_eq!(d.kv_cache_bytes(100, 512, &f16), 18 * 100 * per_pos);
        let full = CacheParams {
            swa_full: true,
            ..f16
        };
        assert_eq!(d.kv_cache_bytes(4096, 512, &full), 18 * 4096 * per_pos);
        // q8_0: 34 bytes per 32 values, q4_0: 18.
        let q = CacheParams {
            type_k: crate::ggml::Type::Q8_0,
            type_v: crate::ggml::Type::Q4_0,
            swa_full: false,
        };
        assert_eq!(
            d.kv_cache_bytes(4096, 512, &q),
            (3 * 4096 + 15 * 1024) * (8 * 34 + 8 * 18)
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("300M"), Some(300 << 20));
        assert_eq!(parse_size(" 2g "), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("99999999999999G"), None);
    }

    #[test]
    fn plan_caps_context_and_adds_up() {
        let p = MemoryPlan::new(&gemma3_270m(), 1000, 1 << 20, 512, CacheParams::default());
        assert_eq!(p.context, 32_768);
        assert_eq!(p.total_bytes, 1000 + p.kv_cache_bytes + p.compute_bytes);
        let with = p.clone().with_repack_copies(300);
        assert_eq!(with.total_bytes, p.total_bytes + 300);
        assert_eq!(
            with.clone().with_repack_copies(100).total_bytes,
            p.total_bytes + 100
        );
        assert!(with.refusal().contains("repacked copies"));
        assert!(!p.refusal().contains("repacked copies"));
    }
}
