//! The KV cache: per layer, keys and values of past positions, in F16 or the type asked for
//! (`-ctk`, `-ctv`: q8_0, q4_0, ...).
//!
//! Global layers keep every position of the context (slot = position). Sliding-window layers
//! keep a ring of `window + n_batch` slots (slot = position mod ring size): a batch of n tokens
//! overwrites only slots whose positions every query of the batch has already left behind, so
//! they need no more. Masks are computed from the position each slot holds, which makes them
//! right at any position past the window.

use super::{Config, ModelError, Result};
use crate::ggml::{Context, TensorId, Type};

/// Slots a batch attends over are rounded up to a multiple of this (as llama.cpp pads its
/// `n_kv`), so that consecutive tokens have the same graph and it is built once for many.
pub const KV_PAD: usize = 256;

/// f16 bit patterns of the mask values.
const F16_ZERO: u16 = 0x0000;
const F16_NEG_INF: u16 = 0xfc00;

/// The cache's element types and layout, as llama.cpp's `-ctk`, `-ctv` and `--swa-full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheParams {
    pub type_k: Type,
    pub type_v: Type,
    /// Sliding-window layers keep every position too, not a ring of the window.
    pub swa_full: bool,
}

impl Default for CacheParams {
    fn default() -> Self {
        CacheParams {
            type_k: Type::F16,
            type_v: Type::F16,
            swa_full: false,
        }
    }
}

/// Types a cache may hold: those ggml's CPU flash attention reads and `set_rows` writes.
pub const CACHE_TYPES: [Type; 8] = [
    Type::F32,
    Type::F16,
    Type::BF16,
    Type::Q8_0,
    Type::Q4_0,
    Type::Q4_1,
    Type::Q5_0,
    Type::Q5_1,
];

/// The slots and mask of one kind of layer (global or local) for one batch.
pub struct KindPlan<'a> {
    /// Cache slot each token of the batch is written to.
    pub slots: &'a [i32],
    /// Slots the batch attends over: `0..n_kv`.
    pub n_kv: usize,
    /// `n_tokens` rows of `n_kv` f16 values: 0 where a token may attend to a slot, -inf
    /// elsewhere.
    pub mask: &'a [u16],
}

struct Kind {
    size: usize,
    window: Option<usize>,
    pad: usize,
    /// Position held by each slot, -1 when empty.
    slot_pos: Vec<i64>,
    /// Slots in use: `0..used` (slots are filled from 0 and never freed but all at once).
    used: usize,
    // The last batch's plan, in buffers reused from batch to batch.
    slots: Vec<i32>,
    mask: Vec<u16>,
    n_kv: usize,
}

impl Kind {
    fn new(size: usize, window: Option<usize>, pad: usize, max_batch: usize) -> Kind {
        Kind {
            size,
            window,
            pad,
            slot_pos: vec![-1; size],
            used: 0,
            slots: Vec::with_capacity(max_batch),
            // A batch attends over at most every slot.
            mask: Vec::with_capacity(size * max_batch),
            n_kv: 0,
        }
    }

    fn plan(&mut self, positions: &[i32]) {
        self.slots.clear();
        for &p in positions {
            let s = p as usize % self.size;
            self.slots.push(s as i32);
            self.slot_pos[s] = p as i64;
            self.used = self.used.max(s + 1);
        }
        self.n_kv = (self.used.div_ceil(self.pad) * self.pad).min(self.size);
        let n_kv = self.n_kv;
        self.mask.clear();
        self.mask.resize(n_kv * positions.len(), F16_NEG_INF);
        for (row, &q) in self.mask.chunks_exact_mut(n_kv).zip(positions) {
            let q = q as i64;
            for (m, &p) in row.iter_mut().zip(&self.slot_pos[..n_kv]) {
                if p >= 0 && p <= q && self.window.is_none_or(|w| q - p < w as i64) {
                    *m = F16_ZERO;
                }
            }
        }
    }

    fn view(&self) -> KindPlan<'_> {
        KindPlan {
            slots: &self.slots,
            n_kv: self.n_kv,
            mask: &self.mask,
        }
    }

    fn forget_from(&mut self, pos: i64) {
        for p in &mut self.slot_pos {
            if *p >= pos {
                *p = -1;
            }
        }
        self.used = self
            .slot_pos
            .iter()
            .rposition(|&p| p >= 0)
            .map_or(0, |i| i + 1);
    }
}

/// Index of a layer's kind in [`KvCache`]'s plans: 0 global, 1 sliding window.
pub const GLOBAL: usize = 0;
pub const LOCAL: usize = 1;

pub struct LayerCache {
    pub k: TensorId,
    pub v: TensorId,
    pub kind: usize,
}

pub struct KvCache {
    pub ctx: Context<'static>,
    pub layers: Vec<LayerCache>,
    pub params: CacheParams,
    kinds: [Kind; 2],
    n_ctx: usize,
}

impl KvCache {
    /// A cache for `n_ctx` positions, filled in batches of at most `n_batch` tokens.
    pub fn new(c: &Config, n_ctx: usize, n_batch: usize, params: CacheParams) -> Result<KvCache> {
        for (flag, ty) in [("-ctk", params.type_k), ("-ctv", params.type_v)] {
            if !CACHE_TYPES.contains(&ty) {
                return Err(ModelError::Config(format!(
                    "{flag} {ty}: the KV cache can be {}",
                    CACHE_TYPES.map(|t| t.name()).join(", ")
                )));
            }
        }
        let head_bytes = |ty: Type, d: usize, what: &str| {
            ty.row_bytes(d as u64).map(|b| b as usize).ok_or_else(|| {
                ModelError::Config(format!(
                    "a {ty} KV cache needs the {what} head dim ({d}) to be a multiple of {}",
                    ty.block_size()
                ))
            })
        };
        let k_head = head_bytes(params.type_k, c.head_dim_k, "key")?;
        let v_head = head_bytes(params.type_v, c.head_dim_v, "value")?;
        let local_size = if params.swa_full {
            c.sliding_window.map(|_| n_ctx)
        } else {
            c.local_cache_size(n_ctx, n_batch)
        }
        .unwrap_or(1);
        let kinds = [
            Kind::new(n_ctx, None, KV_PAD, n_batch),
            Kind::new(local_size, c.sliding_window, KV_PAD, n_batch),
        ];
        let kind_of = |il: usize| if c.is_local(il) { LOCAL } else { GLOBAL };
        let bytes: usize = (0..c.n_layer)
            .map(|il| kinds[kind_of(il)].size * c.n_head_kv * (k_head + v_head) + 512)
            .sum();
        // Zeroed, and resident only where written: masked slots are skipped, but never hold NaN
        // bit patterns either.
        let ctx = Context::new_zeroed(bytes + 2 * c.n_layer * Context::tensor_overhead())?;
        let k_row = c.n_head_kv * c.head_dim_k;
        let v_row = c.n_head_kv * c.head_dim_v;
        let mut layers = Vec::with_capacity(c.n_layer);
        for il in 0..c.n_layer {
            let kind = kind_of(il);
            let size = kinds[kind].size;
            let k = ctx.new_tensor(params.type_k, &[k_row, size], &format!("cache_k_l{il}"))?;
            let v = ctx.new_tensor(params.type_v, &[v_row, size], &format!("cache_v_l{il}"))?;
            layers.push(LayerCache {
                k: ctx.id_of(k),
                v: ctx.id_of(v),
                kind,
            });
        }
        Ok(KvCache {
            ctx,
            layers,
            params,
            kinds,
            n_ctx,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Slots of each kind of layer (global, local); a batch attends over at most these.
    pub fn sizes(&self) -> [usize; 2] {
        [self.kinds[GLOBAL].size, self.kinds[LOCAL].size]
    }

    /// Assigns slots to `positions` and builds the masks of both kinds of layer, read back by
    /// [`KvCache::plans`]. Allocates nothing once the buffers have grown to the largest batch.
    pub fn plan(&mut self, positions: &[i32]) {
        for k in &mut self.kinds {
            k.plan(positions);
        }
    }

    /// The last [`KvCache::plan`] of each kind of layer.
    pub fn plans(&self) -> [KindPlan<'_>; 2] {
        [self.kinds[GLOBAL].view(), self.kinds[LOCAL].view()]
    }

    /// Forgets every position (a new conversation).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Forgets positions from `pos` on (e.g. to re-evaluate the end of a conversation).
    pub fn truncate(&mut self, pos: usize) {
        for k in &mut self.kinds {
            k.forget_from(pos as i64);
        }
    }

    /// Bytes held by the cache tensors.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| self.ctx.resolve(l.k).n_bytes() + self.ctx.resolve(l.v).n_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(k: &Kind, row: usize) -> Vec<usize> {
        let n = k.n_kv;
        (0..n)
            .filter(|&s| k.mask[row * n + s] == F16_ZERO)
            .collect()
    }

    #[test]
    fn global_mask_is_causal() {
        let mut k = Kind::new(8, None, 1, 4);
        k.plan(&[0, 1, 2]);
        assert_eq!(k.slots, vec![0, 1, 2]);
        assert_eq!(k.n_kv, 3);
        let inf = F16_NEG_INF;
        assert_eq!(k.mask, vec![0, inf, inf, 0, 0, inf, 0, 0, 0]);
        k.plan(&[3]);
        assert_eq!((k.n_kv, k.mask.clone()), (4, vec![0; 4]));
    }

    #[test]
    fn padded_slots_are_masked() {
        let mut k = Kind::new(10, None, 4, 4);
        k.plan(&[0, 1, 2, 3, 4]);
        assert_eq!(k.n_kv, 8);
        assert_eq!(visible(&k, 4), vec![0, 1, 2, 3, 4]);
        k.plan(&[5, 6, 7, 8]);
        // Padding stops at the cache size.
        assert_eq!(k.n_kv, 10);
        assert_eq!(visible(&k, 3), (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn ring_keeps_the_window_past_its_size() {
        // Window 3, ring of 5 slots (window + batch of 2), fed far past the window.
        let mut k = Kind::new(5, Some(3), 1, 2);
        for p in 0..20 {
            k.plan(&[p]);
        }
        // Batch of 2 at positions 20, 21: slots 0 and 1.
        k.plan(&[20, 21]);
        assert_eq!(k.slots, vec![0, 1]);
        assert_eq!(k.n_kv, 5);
        // Slots hold positions [20, 21, 17, 18, 19].
        assert_eq!(visible(&k, 0), vec![0, 3, 4], "20 sees 18, 19, 20");
        assert_eq!(visible(&k, 1), vec![0, 1, 4], "21 sees 19, 20, 21");
    }

    #[test]
    fn truncate_frees_the_end() {
        let mut k = Kind::new(16, None, 1, 8);
        k.plan(&[0, 1, 2, 3, 4, 5]);
        k.forget_from(2);
        k.plan(&[2]);
        assert_eq!(k.n_kv, 3);
        assert_eq!(visible(&k, 0), vec![0, 1, 2]);
    }
}
