//! The memory plan: what the weights, the KV cache and the compute buffers will take, next to
//! what the machine has available.

use super::config::{Dims, Experts};
use super::kv_cache::{CacheLayout, CacheParams};
use crate::gguf::Gguf;

/// A weight table read a row per token (Gemma 4's per-layer embeddings, the largest tensor of
/// E2B/E4B): it stays in the map, and only the pages under the rows of the tokens a session
/// sees are ever read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowTable {
    pub bytes: u64,
    pub row_bytes: u64,
    pub rows: u64,
}

impl RowTable {
    pub const TENSOR: &'static str = "per_layer_token_embd.weight";

    pub fn of(g: &Gguf) -> Option<RowTable> {
        let t = g.tensor(Self::TENSOR)?;
        let rows = t.dims.get(1).copied().unwrap_or(1).max(1);
        Some(RowTable {
            bytes: t.n_bytes,
            row_bytes: t.n_bytes / rows,
            rows,
        })
    }

    /// The most of it that `tokens` tokens page in: a row each, rounded out to whole 4 KiB
    /// pages (a row may straddle one more).
    pub fn touched(&self, tokens: u64) -> u64 {
        const PAGE: u64 = 4096;
        let per_row = (self.row_bytes.div_ceil(PAGE) + 1) * PAGE;
        (tokens.min(self.rows) * per_row).min(self.bytes)
    }
}

/// An estimate of the compute buffers for a batch of `n_batch` tokens: the activations that
/// are alive at once inside one block (residual, normed input, Q/K/V, attention output, the
/// three FFN intermediates) in f32, plus one row of logits. Buffers are reused from block to
/// block, so this does not grow with depth; flash attention keeps the scores per thread.
fn compute_bytes(d: &Dims, experts: Option<&Experts>, n_batch: usize) -> u64 {
    let q = d.n_head * d.head_dim_k;
    let kv = d.n_head_kv * (d.head_dim_k + d.head_dim_v);
    let attn_out = d.n_head * d.head_dim_v;
    // With experts: the router's scores, and per chosen expert its gate/up/GeGLU rows and its
    // output row.
    let moe = experts.map_or(0, |e| e.n_expert + e.n_used * (3 * e.n_ff + d.n_embd));
    let per_token = 3 * d.n_embd + q + kv + attn_out + 3 * d.n_ff + moe;
    (4 * n_batch * per_token + 4 * d.n_vocab) as u64
}

/// Memory one session of a model will take.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    pub context: usize,
    pub batch: usize,
    pub cache: CacheParams,
    /// Weight bytes that will be resident: the file's tensors (mapped, not copied), but of a
    /// [`RowTable`] only the rows a full context can touch.
    pub weights_bytes: u64,
    /// Every weight byte the map holds.
    pub mapped_bytes: u64,
    pub row_table: Option<RowTable>,
    pub kv_cache_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
    /// `MemAvailable` of this machine, when known.
    pub available_bytes: Option<u64>,
}

impl MemoryPlan {
    /// A plan for a model of `dims` with a KV cache of `layout` in `cache`'s types.
    pub fn new(
        dims: &Dims,
        layout: &CacheLayout,
        mapped_bytes: u64,
        row_table: Option<RowTable>,
        experts: Option<&Experts>,
        cache: CacheParams,
    ) -> MemoryPlan {
        let (context, batch) = (layout.size.n_ctx, layout.size.n_batch);
        let weights_bytes = match row_table {
            Some(t) => mapped_bytes.saturating_sub(t.bytes) + t.touched(context as u64),
            None => mapped_bytes,
        };
        let kv_cache_bytes = layout.bytes(&cache);
        let compute_bytes = compute_bytes(dims, experts, batch);
        MemoryPlan {
            context,
            batch,
            cache,
            weights_bytes,
            mapped_bytes,
            row_table,
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

    /// Why a session of this plan is refused: the numbers, and what to change.
    pub fn refusal(&self) -> String {
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        format!(
            "not enough memory: weights {} + KV cache {} (context {}, {}/{}) + compute ~{} = {}, \
             but only {} is available; use a smaller -c, a quantized cache (-ctk q8_0 -ctv q8_0) \
             or a smaller model",
            mib(self.weights_bytes),
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
    use crate::model::config::LayerKind;
    use crate::model::kv_cache::ContextSize;

    fn gemma3_270m() -> Dims {
        Dims {
            n_layer: 18,
            n_embd: 640,
            n_ff: 2048,
            n_head: 4,
            n_head_kv: 1,
            n_head_kv_swa: 1,
            head_dim_k: 256,
            head_dim_v: 256,
            head_dim_k_swa: 256,
            head_dim_v_swa: 256,
            n_vocab: 262_144,
            n_ctx_train: 32_768,
        }
    }

    /// The 270M's layout: 5 local layers of window 512 for each global one.
    fn layout(n_ctx: usize, n_batch: usize, swa_full: bool) -> CacheLayout {
        let kinds: Vec<LayerKind> = (0..18)
            .map(|il| {
                if il % 6 < 5 {
                    LayerKind::Local
                } else {
                    LayerKind::Global
                }
            })
            .collect();
        let size = ContextSize::resolve(n_ctx, n_batch, 32_768);
        CacheLayout::of_kinds(&gemma3_270m(), &kinds, Some(512), size, swa_full)
    }

    #[test]
    fn kv_cache_keeps_only_the_window_on_local_layers() {
        // 3 global layers x 4096 positions + 15 local layers x (512 + batch 512), 1 KV head x
        // (256 + 256) x 2 B.
        let per_pos = 1024;
        let f16 = CacheParams::default();
        assert_eq!(
            layout(4096, 512, false).bytes(&f16),
            (3 * 4096 + 15 * 1024) * per_pos
        );
        assert_eq!(
            layout(4096, 1, false).bytes(&f16),
            (3 * 4096 + 15 * 513) * per_pos
        );
        assert_eq!(layout(100, 512, false).bytes(&f16), 18 * 100 * per_pos);
        assert_eq!(layout(4096, 512, true).bytes(&f16), 18 * 4096 * per_pos);
        // q8_0: 34 bytes per 32 values, q4_0: 18.
        let q = CacheParams {
            type_k: crate::ggml::Type::Q8_0,
            type_v: crate::ggml::Type::Q4_0,
            swa_full: false,
        };
        assert_eq!(
            layout(4096, 512, false).bytes(&q),
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
        let l = layout(1 << 20, 512, false);
        let p = MemoryPlan::new(&gemma3_270m(), &l, 1000, None, None, CacheParams::default());
        assert_eq!(p.context, 32_768);
        assert_eq!(p.total_bytes, 1000 + p.kv_cache_bytes + p.compute_bytes);
        assert!(p.refusal().contains("context 32768"), "{}", p.refusal());
    }
}
