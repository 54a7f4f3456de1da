//! The KV cache: per layer, keys and values of past positions, in F16 or the type asked for
//! (`-ctk`, `-ctv`: q8_0, q4_0, ...), laid out as [`CacheLayout`] says. Masks are computed
//! from the position each slot holds, which makes them right at any position past the window.

use super::config::{Dims, LayerKind, PerKind};
use super::{Config, ModelError, Result};
use crate::ggml::{Context, Tensor, TensorId, Type};

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

/// A context's size in tokens and the batch size, resolved once for a session (and for the
/// memory plan of one): the context capped at the model's training context where that is
/// known, the batch at the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextSize {
    pub n_ctx: usize,
    pub n_batch: usize,
}

impl ContextSize {
    pub fn resolve(n_ctx: usize, n_batch: usize, n_ctx_train: usize) -> ContextSize {
        let n_ctx = match n_ctx_train {
            0 => n_ctx,
            train => n_ctx.min(train),
        }
        .max(1);
        ContextSize {
            n_ctx,
            n_batch: n_batch.clamp(1, n_ctx),
        }
    }
}

/// One layer's entry in the cache layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerEntry {
    pub kind: LayerKind,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    /// The layer whose cache this one attends over: itself, or an earlier layer of its kind
    /// (Gemma 4's shared-KV layers), which then holds nothing of its own.
    pub source: usize,
}

/// What the KV cache holds: a table of per-layer entries and the slots of each kind of layer.
/// The one source of the cache's shape, for the cache itself and for the memory plan.
///
/// Global layers keep every position of the context (slot = position). Sliding-window layers
/// keep a ring of `window + n_batch` slots (slot = position mod ring size): a batch of n
/// tokens overwrites only slots whose positions every query of the batch has already left
/// behind, so they need no more; with `swa_full` they keep every position too.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheLayout {
    pub size: ContextSize,
    pub layers: Vec<LayerEntry>,
    /// Slots of each kind of layer (0 for local layers of a model without a window).
    pub slots: PerKind<usize>,
    /// Positions each kind of layer attends over at most (its window), `None` for all.
    pub window: PerKind<Option<usize>>,
    /// Whether a token attends only to earlier positions; bidirectional attention (an
    /// embedding model's) attends to both sides, the window split evenly between them.
    pub causal: bool,
}

impl CacheLayout {
    /// The layout of a Gemma model's cache.
    pub fn new(c: &Config, size: ContextSize, swa_full: bool) -> CacheLayout {
        // Bidirectional attention sees positions ahead of a token, which a ring of the window
        // would already have overwritten: such models keep every position.
        let swa_full = swa_full || !c.causal;
        let mut layout = Self::of_kinds(&c.dims, &c.layer_kinds, c.sliding_window, size, swa_full);
        layout.causal = c.causal;
        for (il, l) in layout.layers.iter_mut().enumerate() {
            (l.head_dim_k, l.head_dim_v) = c.head_dims(l.kind);
            l.n_head_kv = c.n_head_kv(l.kind);
            l.source = c.kv_source(il).unwrap_or(il);
        }
        layout
    }

    /// The layout for a file of another architecture, from its standard keys: every layer
    /// global (for `inspect`'s memory plan).
    pub fn all_global(d: &Dims, size: ContextSize) -> CacheLayout {
        Self::of_kinds(d, &vec![LayerKind::Global; d.n_layer], None, size, false)
    }

    /// The layout of layers of `kinds`, the local ones attending over `window`.
    pub(crate) fn of_kinds(
        d: &Dims,
        kinds: &[LayerKind],
        window: Option<usize>,
        size: ContextSize,
        swa_full: bool,
    ) -> CacheLayout {
        let ring = match window {
            Some(w) if !swa_full => w.saturating_add(size.n_batch).min(size.n_ctx),
            Some(_) => size.n_ctx,
            None => 0,
        };
        CacheLayout {
            size,
            layers: kinds
                .iter()
                .enumerate()
                .map(|(il, &kind)| LayerEntry {
                    kind,
                    n_head_kv: d.n_head_kv,
                    head_dim_k: d.head_dim_k,
                    head_dim_v: d.head_dim_v,
                    source: il,
                })
                .collect(),
            slots: PerKind {
                global: size.n_ctx,
                local: ring,
            },
            window: PerKind {
                global: None,
                local: window,
            },
            causal: true,
        }
    }

    /// Bytes of one layer's keys and values in `types`.
    pub fn layer_bytes(&self, l: &LayerEntry, types: &CacheParams) -> u64 {
        let head = |ty: Type, d: usize| ty.row_bytes(d as u64).unwrap_or(2 * d as u64);
        let per_slot = l.n_head_kv as u64
            * (head(types.type_k, l.head_dim_k) + head(types.type_v, l.head_dim_v));
        *self.slots.get(l.kind) as u64 * per_slot
    }

    /// Bytes of the whole cache in `types`: the layers that hold one.
    pub fn bytes(&self, types: &CacheParams) -> u64 {
        self.owners().map(|(_, l)| self.layer_bytes(l, types)).sum()
    }

    /// The layers that hold a cache of their own, with their indices.
    pub fn owners(&self) -> impl Iterator<Item = (usize, &LayerEntry)> {
        self.layers
            .iter()
            .enumerate()
            .filter(|(il, l)| l.source == *il)
    }

    /// Whether some layer is of `kind`.
    pub fn has(&self, kind: LayerKind) -> bool {
        self.layers.iter().any(|l| l.kind == kind)
    }
}

/// The slots and mask of one kind of layer (global or local) for one batch.
pub struct BatchSlots<'a> {
    /// Cache slot each token of the batch is written to.
    pub slots: &'a [i32],
    /// Slots the batch attends over: `0..n_kv`.
    pub n_kv: usize,
    /// `n_tokens` rows of `n_kv` f16 values: 0 where a token may attend to a slot, -inf
    /// elsewhere.
    pub mask: &'a [u16],
}

/// The slots of one kind of layer: which position each holds, and the last batch's slots and mask.
struct Ring {
    size: usize,
    window: Option<usize>,
    causal: bool,
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

impl Ring {
    fn new(size: usize, window: Option<usize>, pad: usize, max_batch: usize) -> Ring {
        Ring {
            size,
            window,
            causal: true,
            pad,
            slot_pos: vec![-1; size],
            used: 0,
            slots: Vec::with_capacity(max_batch),
            // Grown to what batches use (slots attended × tokens), not reserved for the worst
            // case: a large -c and -b made that terabytes before anything was checked.
            mask: Vec::new(),
            n_kv: 0,
        }
    }

    fn assign(&mut self, positions: &[i32]) {
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
        let (causal, window) = (self.causal, self.window);
        for (row, &q) in self.mask.chunks_exact_mut(n_kv).zip(positions) {
            let q = q as i64;
            for (m, &p) in row.iter_mut().zip(&self.slot_pos[..n_kv]) {
                if p >= 0 && sees(causal, window, q, p) {
                    *m = F16_ZERO;
                }
            }
        }
    }

    fn view(&self) -> BatchSlots<'_> {
        BatchSlots {
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

/// Whether a query at position `q` attends to position `p` (llama.cpp's `is_masked_swa`): a
/// causal window of `w` positions ending at `q`, or a symmetric one reaching `w / 2` to each
/// side.
fn sees(causal: bool, window: Option<usize>, q: i64, p: i64) -> bool {
    match (causal, window) {
        (true, w) => p <= q && w.is_none_or(|w| q - p < w as i64),
        (false, None) => true,
        (false, Some(w)) => (q - p).abs() <= (w / 2) as i64,
    }
}

/// One layer's keys and values.
#[derive(Clone, Copy)]
pub struct LayerCache {
    pub k: TensorId,
    pub v: TensorId,
    pub kind: LayerKind,
    /// The tensors are an earlier layer's (nothing is stored through this layer).
    pub shared: bool,
}

pub struct KvCache {
    ctx: Context<'static>,
    pub layers: Vec<LayerCache>,
    /// Each layer's key and value head lengths.
    head_dims: Vec<(usize, usize)>,
    /// The slots of each kind of layer the model has.
    rings: PerKind<Option<Ring>>,
}

impl KvCache {
    /// A cache of `layout` in `types`.
    pub fn new(layout: &CacheLayout, types: CacheParams) -> Result<KvCache> {
        for (flag, ty) in [("-ctk", types.type_k), ("-ctv", types.type_v)] {
            if !CACHE_TYPES.contains(&ty) {
                return Err(ModelError::Config(format!(
                    "{flag} {ty}: the KV cache can be {}",
                    CACHE_TYPES.map(|t| t.name()).join(", ")
                )));
            }
        }
        for l in &layout.layers {
            for (ty, d, what) in [
                (types.type_k, l.head_dim_k, "key"),
                (types.type_v, l.head_dim_v, "value"),
            ] {
                if ty.row_bytes(d as u64).is_none() {
                    return Err(ModelError::Config(format!(
                        "a {ty} KV cache needs the {what} head dim ({d}) to be a multiple of {}",
                        ty.block_size()
                    )));
                }
            }
        }
        let n_batch = layout.size.n_batch;
        let rings = PerKind::new(|kind| {
            layout.has(kind).then(|| Ring {
                causal: layout.causal,
                ..Ring::new(
                    *layout.slots.get(kind),
                    *layout.window.get(kind),
                    KV_PAD,
                    n_batch,
                )
            })
        });
        // Room for each tensor's descriptor and its alignment padding.
        let per_tensor = Context::tensor_overhead() + 256;
        let bytes = layout.bytes(&types) as usize + 2 * layout.layers.len() * per_tensor;
        // Zeroed, and resident only where written: masked slots are skipped, but never hold NaN
        // bit patterns either.
        let ctx = Context::new_zeroed(bytes)?;
        let mut layers: Vec<LayerCache> = Vec::with_capacity(layout.layers.len());
        for (il, l) in layout.layers.iter().enumerate() {
            if let Some(source) = layers.get(l.source).filter(|_| l.source < il) {
                layers.push(LayerCache {
                    shared: true,
                    ..*source
                });
                continue;
            }
            let slots = *layout.slots.get(l.kind);
            let (k_row, v_row) = (l.n_head_kv * l.head_dim_k, l.n_head_kv * l.head_dim_v);
            let k = ctx.new_tensor(types.type_k, &[k_row, slots], &format!("cache_k_l{il}"))?;
            let v = ctx.new_tensor(types.type_v, &[v_row, slots], &format!("cache_v_l{il}"))?;
            layers.push(LayerCache {
                k: ctx.id_of(k),
                v: ctx.id_of(v),
                kind: l.kind,
                shared: false,
            });
        }
        Ok(KvCache {
            ctx,
            layers,
            head_dims: layout
                .layers
                .iter()
                .map(|l| (l.head_dim_k, l.head_dim_v))
                .collect(),
            rings,
        })
    }

    /// Assigns slots to `positions` and builds the masks of each kind of layer, read back by
    /// [`KvCache::batch`]. Allocates nothing once the buffers have grown to the largest batch.
    pub fn assign(&mut self, positions: &[i32]) {
        for ring in [&mut self.rings.global, &mut self.rings.local]
            .into_iter()
            .flatten()
        {
            ring.assign(positions);
        }
    }

    /// The last [`KvCache::assign`] of each kind of layer the model has.
    pub fn batch(&self) -> PerKind<Option<BatchSlots<'_>>> {
        PerKind {
            global: self.rings.global.as_ref().map(Ring::view),
            local: self.rings.local.as_ref().map(Ring::view),
        }
    }

    /// Forgets every position (a new conversation).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Forgets positions from `pos` on (e.g. to re-evaluate the end of a conversation).
    pub fn truncate(&mut self, pos: usize) {
        for ring in [&mut self.rings.global, &mut self.rings.local]
            .into_iter()
            .flatten()
        {
            ring.forget_from(pos as i64);
        }
    }

    /// The graph ops that write a batch's keys `k` (head_dim, kv heads, tokens) and values `v`
    /// (head_dim_v × kv heads, tokens) into layer `il`'s slots `slots` (I32, one per token),
    /// converting them to the cache's types. Add them to the graph before the attention.
    pub fn store<'c>(
        &'c self,
        ctx: &'c Context<'_>,
        il: usize,
        k: Tensor<'c>,
        v: Tensor<'c>,
        slots: Tensor<'c>,
    ) -> Result<[Tensor<'c>; 2]> {
        let (k_cache, v_cache) = self.tensors(il);
        let [dk, n_head_kv, b, _] = k.shape();
        Ok([
            ctx.set_rows(k_cache, ctx.reshape(k, &[dk * n_head_kv, b]), slots)?,
            ctx.set_rows(v_cache, v, slots)?,
        ])
    }

    /// Layer `il`'s keys (head_dim, `n_kv` slots, kv heads) and values (head_dim_v, `n_kv`,
    /// kv heads): views of the first `n_kv` slots, heads apart by their row bytes.
    pub fn view<'c>(
        &'c self,
        ctx: &'c Context<'_>,
        il: usize,
        n_kv: usize,
    ) -> (Tensor<'c>, Tensor<'c>) {
        let (k_cache, v_cache) = self.tensors(il);
        let (dk, dv) = (self.head_dims[il].0, self.head_dims[il].1);
        let heads = |t: Tensor<'c>, d: usize| {
            let row = t.strides()[1];
            let head = row / (t.shape()[0] / d);
            ctx.view(t, &[d, n_kv, t.shape()[0] / d], &[row, head], 0)
        };
        (heads(k_cache, dk), heads(v_cache, dv))
    }

    fn tensors(&self, il: usize) -> (Tensor<'_>, Tensor<'_>) {
        let l = &self.layers[il];
        (self.ctx.resolve(l.k), self.ctx.resolve(l.v))
    }

    /// Bytes held by the cache tensors.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| !l.shared)
            .map(|l| self.ctx.resolve(l.k).n_bytes() + self.ctx.resolve(l.v).n_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(k: &Ring, row: usize) -> Vec<usize> {
        let n = k.n_kv;
        (0..n)
            .filter(|&s| k.mask[row * n + s] == F16_ZERO)
            .collect()
    }

    #[test]
    fn global_mask_is_causal() {
        let mut k = Ring::new(8, None, 1, 4);
        k.assign(&[0, 1, 2]);
        assert_eq!(k.slots, vec![0, 1, 2]);
        assert_eq!(k.n_kv, 3);
        let inf = F16_NEG_INF;
        assert_eq!(k.mask, vec![0, inf, inf, 0, 0, inf, 0, 0, 0]);
        k.assign(&[3]);
        assert_eq!((k.n_kv, k.mask.clone()), (4, vec![0; 4]));
    }

    #[test]
    fn padded_slots_are_masked() {
        let mut k = Ring::new(10, None, 4, 4);
        k.assign(&[0, 1, 2, 3, 4]);
        assert_eq!(k.n_kv, 8);
        assert_eq!(visible(&k, 4), vec![0, 1, 2, 3, 4]);
        k.assign(&[5, 6, 7, 8]);
        // Padding stops at the cache size.
        assert_eq!(k.n_kv, 10);
        assert_eq!(visible(&k, 3), (0..9).collect::<Vec<_>>());
    }

    #[test]
    fn ring_keeps_the_window_past_its_size() {
        // Window 3, ring of 5 slots (window + batch of 2), fed far past the window.
        let mut k = Ring::new(5, Some(3), 1, 2);
        for p in 0..20 {
            k.assign(&[p]);
        }
        // Batch of 2 at positions 20, 21: slots 0 and 1.
        k.assign(&[20, 21]);
        assert_eq!(k.slots, vec![0, 1]);
        assert_eq!(k.n_kv, 5);
        // Slots hold positions [20, 21, 17, 18, 19].
        assert_eq!(visible(&k, 0), vec![0, 3, 4], "20 sees 18, 19, 20");
        assert_eq!(visible(&k, 1), vec![0, 1, 4], "21 sees 19, 20, 21");
    }

    #[test]
    fn truncate_frees_the_end() {
        let mut k = Ring::new(16, None, 1, 8);
        k.assign(&[0, 1, 2, 3, 4, 5]);
        k.forget_from(2);
        k.assign(&[2]);
        assert_eq!(k.n_kv, 3);
        assert_eq!(visible(&k, 0), vec![0, 1, 2]);
    }
}
