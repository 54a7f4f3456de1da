//! Choosing the next token from logits, with llama.cpp's samplers, order and defaults:
//! penalties → top-k → top-p → min-p → temperature → draw. `temp <= 0` is greedy.

use crate::tokenizer::TokenId;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerParams {
    pub temp: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerParams {
    /// llama.cpp's defaults (common/common.h).
    fn default() -> Self {
        SamplerParams {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplerParams {
    pub fn greedy() -> SamplerParams {
        SamplerParams {
            temp: 0.0,
            ..SamplerParams::default()
        }
    }
}

pub struct Sampler {
    params: SamplerParams,
    rng: u64,
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Sampler {
        Sampler {
            params,
            rng: params.seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// A uniform number in [0, 1) (splitmix64: small, and the same sequence for a seed on every
    /// platform).
    fn uniform(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The candidates (id, probability) that remain after the filters, most likely first,
    /// probabilities summing to 1. For greedy sampling: the single best token.
    pub fn distribution(&self, logits: &[f32], history: &[TokenId]) -> Vec<(TokenId, f32)> {
        let p = &self.params;
        let mut logits = logits.to_vec();
        self.apply_penalties(&mut logits, history);
        let mut cand: Vec<(TokenId, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as TokenId, l))
            .collect();
        let by_logit =
            |a: &(TokenId, f32), b: &(TokenId, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.temp <= 0.0 {
            let best = cand
                .iter()
                .copied()
                .min_by(by_logit)
                .expect("logits are not empty");
            return vec![(best.0, 1.0)];
        }
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit);
            cand.truncate(p.top_k);
        }
        cand.sort_by(by_logit);
        softmax(&mut cand);
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            let keep = cand
                .iter()
                .position(|&(_, pr)| {
                    cum += pr;
                    cum >= p.top_p
                })
                .map_or(cand.len(), |i| i + 1);
            cand.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let floor = cand[0].1 * p.min_p;
            cand.retain(|&(_, pr)| pr >= floor);
        }
        // Temperature on the surviving logits: p^(1/T), renormalized.
        for c in &mut cand {
            c.1 = c.1.ln() / p.temp;
        }
        softmax(&mut cand);
        cand
    }

    /// repeat penalty (divide positive logits, multiply negative ones), then presence and
    /// frequency penalties, over the last `repeat_last_n` tokens.
    fn apply_penalties(&self, logits: &mut [f32], history: &[TokenId]) {
        let p = &self.params;
        if p.repeat_last_n == 0
            || (p.repeat_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0)
        {
            return;
        }
        let recent = &history[history.len().saturating_sub(p.repeat_last_n)..];
        let mut counts = std::collections::HashMap::new();
        for &t in recent {
            *counts.entry(t).or_insert(0u32) += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if *l <= 0.0 {
                *l *= p.repeat_penalty;
            } else {
                *l /= p.repeat_penalty;
            }
            *l -= n as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }

    /// Picks the next token.
    pub fn sample(&mut self, logits: &[f32], history: &[TokenId]) -> TokenId {
        let cand = self.distribution(logits, history);
        if cand.len() == 1 {
            return cand[0].0;
        }
        let r = self.uniform() as f32;
        let mut cum = 0.0;
        for &(id, pr) in &cand {
            cum += pr;
            if r < cum {
                return id;
            }
        }
        cand[cand.len() - 1].0
    }
}

/// In place: values become exp(v - max) / sum.
fn softmax(c: &mut [(TokenId, f32)]) {
    let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in c.iter_mut() {
        x.1 = (x.1 - max).exp();
        sum += x.1;
    }
    for x in c.iter_mut() {
        x.1 /= sum;
    }
}
