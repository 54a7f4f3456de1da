//! The KV cache: per layer, keys and values of past positions in F16.
//!
//! Global layers keep every position of the context (slot = position). Sliding-window layers
//! keep a ring of `window + n_batch` slots (slot = position mod ring size): a batch of n tokens
//! overwrites only slots whose positions every query of the batch has already left behind, so
//! they need no more. Masks are computed from the position each slot holds, which makes them
//! right at any position past the window.

use super::{Config, Result};
use crate::ggml::{Context, TensorId, Type};

/// The slots and mask of one kind of layer (global or local) for one batch.
pub struct KindPlan {
    /// Cache slot each token of the batch is written to.
    pub slots: Vec<i32>,
    /// Slots the batch attends over: `0..n_kv`.
    pub n_kv: usize,
    /// `n_tokens` rows of `n_kv` values: 0 where a token may attend to a slot, -inf elsewhere.
    pub mask: Vec<f32>,
}

struct Kind {
    size: usize,
    window: Option<usize>,
    /// Position held by each slot, -1 when empty.
    slot_pos: Vec<i64>,
}

impl Kind {
    fn plan(&mut self, positions: &[i32]) -> KindPlan {
        let slots: Vec<i32> = positions
            .iter()
            .map(|&p| (p as usize % self.size) as i32)
            .collect();
        for (&s, &p) in slots.iter().zip(positions) {
            self.slot_pos[s as usize] = p as i64;
        }
        let n_kv = self
            .slot_pos
            .iter()
            .rposition(|&p| p >= 0)
            .map_or(0, |i| i + 1);
        let mut mask = vec![f32::NEG_INFINITY; n_kv * positions.len()];
        for (t, &q) in positions.iter().enumerate() {
            let q = q as i64;
            for (s, &p) in self.slot_pos[..n_kv].iter().enumerate() {
                let visible = p >= 0 && p <= q && self.window.is_none_or(|w| q - p < w as i64);
                if visible {
                    mask[t * n_kv + s] = 0.0;
                }
            }
        }
        KindPlan { slots, n_kv, mask }
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
    kinds: [Kind; 2],
    n_ctx: usize,
}

impl KvCache {
    /// A cache for `n_ctx` positions, filled in batches of at most `n_batch` tokens.
    pub fn new(c: &Config, n_ctx: usize, n_batch: usize) -> Result<KvCache> {
        let local_size = c.local_cache_size(n_ctx, n_batch).unwrap_or(1);
        let kinds = [
            Kind {
                size: n_ctx,
                window: None,
                slot_pos: vec![-1; n_ctx],
            },
            Kind {
                size: local_size,
                window: c.sliding_window,
                slot_pos: vec![-1; local_size],
            },
        ];
        let k_row = c.n_head_kv * c.head_dim_k;
        let v_row = c.n_head_kv * c.head_dim_v;
        let bytes: usize = (0..c.n_layer)
            .map(|il| c.kv_positions(il, n_ctx, n_batch) * (k_row + v_row) * 2 + 512)
            .sum();
        let ctx = Context::new(bytes + 2 * c.n_layer * Context::tensor_overhead())?;
        let mut layers = Vec::with_capacity(c.n_layer);
        for il in 0..c.n_layer {
            let kind = if c.is_local(il) { LOCAL } else { GLOBAL };
            let size = kinds[kind].size;
            let k = ctx.new_tensor(Type::F16, &[k_row, size], &format!("cache_k_l{il}"))?;
            let v = ctx.new_tensor(Type::F16, &[v_row, size], &format!("cache_v_l{il}"))?;
            // Zeroed: masked slots are skipped, but never hold NaN bit patterns either.
            k.write_bytes(&vec![0; k.n_bytes()])?;
            v.write_bytes(&vec![0; v.n_bytes()])?;
            layers.push(LayerCache {
                k: ctx.id_of(k),
                v: ctx.id_of(v),
                kind,
            });
        }
        Ok(KvCache {
            ctx,
            layers,
            kinds,
            n_ctx,
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Assigns slots to `positions` and builds the masks of both kinds of layer.
    pub fn plan(&mut self, positions: &[i32]) -> [KindPlan; 2] {
        let [g, l] = &mut self.kinds;
        [g.plan(positions), l.plan(positions)]
    }

    /// Forgets every position (a new conversation).
    pub fn clear(&mut self) {
        for k in &mut self.kinds {
            k.slot_pos.fill(-1);
        }
    }

    /// Forgets positions from `pos` on (e.g. to re-evaluate the end of a conversation).
    pub fn truncate(&mut self, pos: usize) {
        for k in &mut self.kinds {
            for p in &mut k.slot_pos {
                if *p >= pos as i64 {
                    *p = -1;
                }
            }
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

    fn kind(size: usize, window: Option<usize>) -> Kind {
        Kind {
            size,
            window,
            slot_pos: vec![-1; size],
        }
    }

    #[test]
    fn global_mask_is_causal() {
        let mut k = kind(8, None);
        let p = k.plan(&[0, 1, 2]);
        assert_eq!(p.slots, vec![0, 1, 2]);
        assert_eq!(p.n_kv, 3);
        let inf = f32::NEG_INFINITY;
        assert_eq!(p.mask, vec![0.0, inf, inf, 0.0, 0.0, inf, 0.0, 0.0, 0.0]);
        let p = k.plan(&[3]);
        assert_eq!((p.n_kv, p.mask.clone()), (4, vec![0.0; 4]));
    }

    #[test]
    fn ring_keeps_the_window_past_its_size() {
        // Window 3, ring of 5 slots (window + batch of 2), fed far past the window.
        let mut k = kind(5, Some(3));
        for p in 0..20 {
            k.plan(&[p]);
        }
        // Batch of 2 at positions 20, 21: slots 0 and 1.
        let p = k.plan(&[20, 21]);
        assert_eq!(p.slots, vec![0, 1]);
        assert_eq!(p.n_kv, 5);
        // Slots hold positions [20, 21, 17, 18, 19].
        let visible =
            |row: usize| -> Vec<usize> { (0..5).filter(|&s| p.mask[row * 5 + s] == 0.0).collect() };
        assert_eq!(visible(0), vec![0, 3, 4], "20 sees 18, 19, 20");
        assert_eq!(visible(1), vec![0, 1, 4], "21 sees 19, 20, 21");
    }
}
