//! Choosing the next token from logits, with llama.cpp's samplers, order and defaults:
//! penalties → top-k → top-p → min-p → temperature → draw. `temp <= 0` is greedy.

use crate::tokenizer::TokenId;

/// The `k` highest of `logits` with their ids, best first (ties: the lower id first), as
/// `generate --n-probs` reports them. O(n) selection, then a sort of the `k`.
pub fn top_logits(logits: &[f32], k: usize) -> Vec<(TokenId, f32)> {
    let k = k.min(logits.len());
    if k == 0 {
        return Vec::new();
    }
    let order = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let mut ids: Vec<TokenId> = (0..logits.len() as TokenId).collect();
    ids.select_nth_unstable_by(k - 1, order);
    ids.truncate(k);
    ids.sort_unstable_by(order);
    ids.into_iter()
        .map(|id| (id, logits[id as usize]))
        .collect()
}

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
    /// Checks every value against the range it has a meaning in, naming the flag.
    pub fn check(&self) -> Result<(), String> {
        let p = self;
        let bad = |flag: &str, v: f32, range: &str| Err(format!("{flag} {v}: must be {range}"));
        if !p.temp.is_finite() {
            return bad("--temp", p.temp, "a number (0 or less: greedy)");
        }
        if !(0.0..=1.0).contains(&p.top_p) {
            return bad("--top-p", p.top_p, "from 0 to 1");
        }
        if !(0.0..=1.0).contains(&p.min_p) {
            return bad("--min-p", p.min_p, "from 0 to 1");
        }
        if !(p.repeat_penalty.is_finite() && p.repeat_penalty > 0.0) {
            return bad("--repeat-penalty", p.repeat_penalty, "above 0 (1: off)");
        }
        for (flag, v) in [
            ("--presence-penalty", p.presence_penalty),
            ("--frequency-penalty", p.frequency_penalty),
        ] {
            if !v.is_finite() {
                return bad(flag, v, "a finite number (0: off)");
            }
        }
        Ok(())
    }

    pub fn greedy() -> SamplerParams {
        SamplerParams {
            temp: 0.0,
            ..SamplerParams::default()
        }
    }
}

/// splitmix64: a small generator that gives the same sequence for a seed on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

pub struct Sampler {
    params: SamplerParams,
    rng: SplitMix64,
    /// Tokens never sampled (llama.cpp's `--ignore-eos` bans the end-of-generation tokens).
    banned: Vec<TokenId>,
    /// Candidates of the token being chosen, and the penalized window's ids sorted: buffers
    /// kept from token to token.
    cand: Vec<(TokenId, f32)>,
    recent: Vec<TokenId>,
    /// The penalized tokens and their new logits, sorted by id.
    penalized: Vec<(TokenId, f32)>,
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Sampler {
        Sampler {
            params,
            rng: SplitMix64::new(params.seed),
            banned: Vec::new(),
            cand: Vec::new(),
            recent: Vec::new(),
            penalized: Vec::new(),
        }
    }

    /// Never samples `ids` (as a logit bias of minus infinity would).
    pub fn ban(&mut self, ids: &[TokenId]) {
        self.banned.extend_from_slice(ids);
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    /// A uniform number in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The candidates (id, probability) that remain after the filters, most likely first,
    /// probabilities summing to 1. For greedy sampling: the single best token.
    pub fn distribution(&mut self, logits: &[f32], history: &[TokenId]) -> Vec<(TokenId, f32)> {
        self.filter(logits, history).to_vec()
    }

    /// [`Sampler::distribution`] in the sampler's own buffer: once it has grown, choosing a
    /// token allocates nothing.
    fn filter(&mut self, logits: &[f32], history: &[TokenId]) -> &[(TokenId, f32)] {
        let p = self.params;
        let n = logits.len();
        let k = if p.temp <= 0.0 {
            1
        } else if p.top_k == 0 || p.top_k >= n {
            n
        } else {
            p.top_k
        };
        penalize(&p, logits, history, &mut self.recent, &mut self.penalized);
        let cand = &mut self.cand;
        if k == n && (p.top_p < 1.0 || p.min_p > 0.0) {
            head_of_distribution(logits, &p, &self.penalized, &self.banned, cand);
        } else {
            best_candidates(logits, k, &self.penalized, &self.banned, cand);
            if p.temp <= 0.0 {
                if let Some(best) = cand.first_mut() {
                    best.1 = 1.0;
                }
                return cand;
            }
            softmax(cand);
        }
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
        if let (true, Some(&(_, best))) = (p.min_p > 0.0, cand.first()) {
            let floor = best * p.min_p;
            // The best token always stays, whatever the floor (min-p above 1, say).
            let mut first = true;
            cand.retain(|&(_, pr)| std::mem::take(&mut first) || pr >= floor);
        }
        // Temperature on the surviving logits: p^(1/T), renormalized.
        for c in cand.iter_mut() {
            c.1 = c.1.ln() / p.temp;
        }
        softmax(cand);
        cand
    }

    /// Picks the next token. Never panics: with every token banned it picks the most likely
    /// one regardless, and non-finite logits (which a session refuses to hand out) give some
    /// token rather than a crash.
    pub fn sample(&mut self, logits: &[f32], history: &[TokenId]) -> TokenId {
        match self.filter(logits, history).len() {
            0 => {
                let best = (0..logits.len())
                    .max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a)));
                return best.unwrap_or(0) as TokenId;
            }
            1 => return self.cand[0].0,
            _ => {}
        }
        let r = self.uniform() as f32;
        let cand = &self.cand;
        let mut cum = 0.0;
        for &(id, pr) in cand {
            cum += pr;
            if r < cum {
                return id;
            }
        }
        cand[cand.len() - 1].0
    }
}

/// The penalized tokens' logits, into `out` sorted by id: repeat penalty (divide positive
/// logits, multiply negative ones), then presence and frequency penalties, over the last
/// `repeat_last_n` tokens of `history`.
fn penalize(
    p: &SamplerParams,
    logits: &[f32],
    history: &[TokenId],
    recent: &mut Vec<TokenId>,
    out: &mut Vec<(TokenId, f32)>,
) {
    out.clear();
    if !penalizes(p) {
        return;
    }
    // Each distinct id once with its count: runs of the sorted window.
    recent.clear();
    recent.extend_from_slice(&history[history.len().saturating_sub(p.repeat_last_n)..]);
    recent.sort_unstable();
    for run in recent.chunk_by(|a, b| a == b) {
        let (t, n) = (run[0], run.len());
        let Some(&l) = logits.get(t as usize) else {
            continue;
        };
        let l = if l <= 0.0 {
            l * p.repeat_penalty
        } else {
            l / p.repeat_penalty
        };
        out.push((t, l - (n as f32 * p.frequency_penalty + p.presence_penalty)));
    }
}

/// llama.cpp's order of candidates: the highest logit first, ties to the lowest id.
fn by_logit(a: &(TokenId, f32), b: &(TokenId, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` best tokens in [`by_logit`] order, into `out`, where the tokens of `penalized` have
/// its logits instead of `logits`' and the `banned` ones are left out.
///
/// Without building all n candidates (on a 262k vocabulary that, and selecting among them,
/// is most of a top-k sampler's time; the README has the figures): one pass keeps the best k + m raw logits, m being
/// the penalized and banned tokens, in a buffer of twice that, cut back whenever it fills;
/// every logit not above the kept ones' worst is passed over at the cost of one comparison.
/// The k best of the other tokens are among those k + m, so dropping the m and adding the
/// penalized ones' new logits leaves the k best of all.
fn best_candidates(
    logits: &[f32],
    k: usize,
    penalized: &[(TokenId, f32)],
    banned: &[TokenId],
    out: &mut Vec<(TokenId, f32)>,
) {
    out.clear();
    let keep = (k + penalized.len() + banned.len()).min(logits.len());
    let mut floor: Option<f32> = None;
    for (i, &l) in logits.iter().enumerate() {
        // A later id with a logit equal to the floor's comes after it.
        if floor.is_some_and(|f| l.total_cmp(&f).is_le()) {
            continue;
        }
        out.push((i as TokenId, l));
        if out.len() == 2 * keep {
            out.select_nth_unstable_by(keep - 1, by_logit);
            out.truncate(keep);
            floor = Some(out[keep - 1].1);
        }
    }
    let special =
        |id: &TokenId| banned.contains(id) || penalized.binary_search_by_key(id, |c| c.0).is_ok();
    out.retain(|(id, _)| !special(id));
    out.extend(penalized.iter().filter(|(id, _)| !banned.contains(id)));
    if out.len() > k {
        out.select_nth_unstable_by(k - 1, by_logit);
        out.truncate(k);
    }
    // Unstable: the order is total (ids differ), and a stable sort of thousands would allocate.
    out.sort_unstable_by(by_logit);
}

/// Without top-k, the candidates top-p and min-p can keep, into `out` in [`by_logit`] order,
/// with their probabilities over every token, as a softmax over all of them would give: the
/// sum of the exponentials over all tokens, then ever more of the best tokens (64, then 8
/// times as many) until they hold the top-p mass or reach the min-p floor, instead of sorting
/// the whole vocabulary (the README has the figures).
fn head_of_distribution(
    logits: &[f32],
    p: &SamplerParams,
    penalized: &[(TokenId, f32)],
    banned: &[TokenId],
    out: &mut Vec<(TokenId, f32)>,
) {
    let n = logits.len();
    // Any shift at or above the largest logit keeps the exponentials in range.
    let max = penalized
        .iter()
        .map(|c| c.1)
        .chain(logits.iter().copied())
        .fold(f32::NEG_INFINITY, f32::max);
    let e = |l: f32| (l - max).exp() as f64;
    let mut sum: f64 = logits.iter().map(|&l| e(l)).sum();
    for (j, &id) in banned.iter().enumerate() {
        if let (Some(&l), false) = (logits.get(id as usize), banned[..j].contains(&id)) {
            sum -= e(l);
        }
    }
    for &(id, l) in penalized.iter().filter(|c| !banned.contains(&c.0)) {
        sum += e(l) - e(logits[id as usize]);
    }
    let mut k = 64.min(n);
    loop {
        best_candidates(logits, k, penalized, banned, out);
        let Some(&(_, best)) = out.first() else {
            return;
        };
        let floor = best + p.min_p.ln();
        let mut cum = 0.0;
        let enough = out.iter().any(|&(_, l)| {
            cum += e(l) / sum;
            (p.top_p < 1.0 && cum >= p.top_p as f64) || (p.min_p > 0.0 && l < floor)
        });
        if enough || k == n {
            break;
        }
        k = (k * 8).min(n);
    }
    for c in out.iter_mut() {
        c.1 = (e(c.1) / sum) as f32;
    }
}

fn penalizes(p: &SamplerParams) -> bool {
    p.repeat_last_n > 0
        && (p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_logits_are_the_best_first_ties_by_id() {
        let logits = [0.5, 3.0, -1.0, 3.0, 2.0, f32::NEG_INFINITY];
        assert_eq!(top_logits(&logits, 3), vec![(1, 3.0), (3, 3.0), (4, 2.0)]);
        assert_eq!(top_logits(&logits, 99).len(), 6);
        assert!(top_logits(&logits, 0).is_empty());
        // Against a full sort.
        let many: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1013) as f32 * 0.01)
            .collect();
        let mut all: Vec<(u32, f32)> = many
            .iter()
            .enumerate()
            .map(|(i, &x)| (i as u32, x))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(top_logits(&many, 40), all[..40].to_vec());
    }

    fn params(f: impl FnOnce(&mut SamplerParams)) -> SamplerParams {
        // Filters off unless a test turns one on.
        let mut p = SamplerParams {
            temp: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerParams::default()
        };
        f(&mut p);
        p
    }

    fn probs(logits: &[f32]) -> Vec<f64> {
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    const LOGITS: [f32; 5] = [2.0, 1.0, 0.5, -1.0, 3.0];

    #[test]
    fn plain_softmax_when_filters_are_off() {
        let d = Sampler::new(params(|_| {})).distribution(&LOGITS, &[]);
        let want = probs(&LOGITS);
        assert_eq!(
            d.iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![4, 0, 1, 2, 3]
        );
        for (id, p) in d {
            assert!((p as f64 - want[id as usize]).abs() < 1e-6);
        }
    }

    #[test]
    fn greedy_picks_the_best_and_the_lowest_id_on_ties() {
        let mut s = Sampler::new(SamplerParams::greedy());
        assert_eq!(s.distribution(&LOGITS, &[]), vec![(4, 1.0)]);
        assert_eq!(s.distribution(&[1.0, 3.0, 3.0], &[]), vec![(1, 1.0)]);
    }

    /// The one-pass selection against the obvious one: every token's (penalized) logit, banned
    /// ones removed, all sorted. Coarse values make ties common; k from 1 (greedy) to past
    /// the vocabulary, with penalties that raise and lower logits and with bans.
    #[test]
    fn best_candidates_are_the_first_k_of_the_full_sort() {
        let mut rng = SplitMix64::new(3);
        let logits: Vec<f32> = (0..5000)
            .map(|_| (rng.next_u64() % 50) as f32 - 25.0)
            .collect();
        let best = logits.iter().copied().fold(f32::MIN, f32::max);
        let top: Vec<TokenId> = (0..5000u32)
            .filter(|&i| logits[i as usize] == best)
            .collect();
        let history: Vec<TokenId> = top.iter().take(3).copied().chain([17, 17, 4999]).collect();
        for (repeat_penalty, banned) in [(1.0, vec![]), (1.5, vec![top[3], 9]), (0.5, vec![17])] {
            let p = SamplerParams {
                repeat_penalty,
                presence_penalty: 0.25,
                ..SamplerParams::default()
            };
            let (all, penalized) = full_sort(&p, &logits, &history, &banned);
            let mut out = Vec::new();
            for k in [1, 2, 7, 40, 300, 4990, 5000, 6000] {
                best_candidates(&logits, k, &penalized, &banned, &mut out);
                assert_eq!(
                    out,
                    all[..k.min(all.len())],
                    "k {k}, penalty {repeat_penalty}"
                );
            }
        }
    }

    /// Without top-k, top-p and min-p over the head of the distribution against the obvious
    /// way: every token's (penalized) logit, banned ones removed, sorted, a softmax over all,
    /// then the filters. Flat logits make top-p need most of the 5000 tokens (the head widens
    /// from 64 up to all of them); peaked ones, a few. Probabilities agree to 1e-5 (f32
    /// rounding of sums over 5000 terms).
    #[test]
    fn top_p_and_min_p_without_top_k_match_a_full_sort() {
        let mut rng = SplitMix64::new(5);
        let mut uniform = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let flat: Vec<f32> = (0..5000).map(|_| (uniform() * 6.0) as f32).collect();
        let peaked: Vec<f32> = (0..5000)
            .map(|_| (uniform().powi(8) * 30.0) as f32)
            .collect();
        let history: Vec<TokenId> = vec![3, 3, 70, 4000];
        for logits in [&flat, &peaked] {
            for (top_p, min_p) in [
                (0.5, 0.0),
                (0.95, 0.0),
                (0.95, 0.05),
                (1.0, 0.2),
                (0.99, 0.01),
            ] {
                let p = SamplerParams {
                    top_k: 0,
                    top_p,
                    min_p,
                    repeat_penalty: 1.3,
                    ..SamplerParams::default()
                };
                let mut s = Sampler::new(p);
                s.ban(&[9, 9, 4001]);
                let got = s.distribution(logits, &history);

                let (all, _) = full_sort(&p, logits, &history, &[9, 4001]);
                let probs = probs(&all.iter().map(|c| c.1).collect::<Vec<_>>());
                let mut cum = 0.0;
                let mut keep = all.len();
                for (i, &pr) in probs.iter().enumerate() {
                    cum += pr;
                    if top_p < 1.0 && cum >= top_p as f64 {
                        keep = i + 1;
                        break;
                    }
                }
                let kept: Vec<(TokenId, f64)> = all[..keep]
                    .iter()
                    .zip(&probs)
                    .filter(|&(_, &pr)| pr >= probs[0] * min_p as f64)
                    .map(|(c, &pr)| (c.0, pr))
                    .collect();
                let tempered = probs_of_tempered(&kept, p.temp);
                assert_eq!(got.len(), kept.len(), "top-p {top_p}, min-p {min_p}");
                for ((id, pr), (want_id, want)) in got.iter().zip(&tempered) {
                    assert_eq!(id, want_id);
                    assert!((*pr as f64 - want).abs() < 1e-5, "{id}: {pr} vs {want}");
                }
            }
        }
    }

    type Candidates = Vec<(TokenId, f32)>;

    /// The obvious way: every token with its (penalized) logit, banned ones removed, all
    /// sorted; and the penalized tokens.
    fn full_sort(
        p: &SamplerParams,
        logits: &[f32],
        history: &[TokenId],
        banned: &[TokenId],
    ) -> (Candidates, Candidates) {
        let (mut recent, mut penalized) = (Vec::new(), Vec::new());
        penalize(p, logits, history, &mut recent, &mut penalized);
        let mut all: Vec<(TokenId, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as TokenId, l))
            .collect();
        for &(id, l) in &penalized {
            all[id as usize].1 = l;
        }
        all.retain(|(id, _)| !banned.contains(id));
        all.sort_by(by_logit);
        (all, penalized)
    }

    /// p^(1/T), renormalized.
    fn probs_of_tempered(c: &[(TokenId, f64)], temp: f32) -> Vec<(TokenId, f64)> {
        let w: Vec<f64> = c.iter().map(|&(_, p)| p.powf(1.0 / temp as f64)).collect();
        let s: f64 = w.iter().sum();
        c.iter().zip(w).map(|(&(id, _), w)| (id, w / s)).collect()
    }

    #[test]
    fn banned_tokens_are_never_candidates() {
        let mut s = Sampler::new(SamplerParams::greedy());
        s.ban(&[4]);
        assert_eq!(s.distribution(&LOGITS, &[]), vec![(0, 1.0)]);
        let mut s = Sampler::new(params(|_| {}));
        s.ban(&[4, 1]);
        let d = s.distribution(&LOGITS, &[]);
        assert_eq!(d.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 2, 3]);
        let want = probs(&[LOGITS[0], LOGITS[2], LOGITS[3]]);
        for (c, w) in d.iter().zip(want) {
            assert!((c.1 as f64 - w).abs() < 1e-6);
        }
        for _ in 0..200 {
            assert!(![4, 1].contains(&s.sample(&LOGITS, &[])));
        }
    }

    #[test]
    fn top_k_keeps_k_and_renormalizes() {
        let d = Sampler::new(params(|p| p.top_k = 2)).distribution(&LOGITS, &[]);
        let want = probs(&[3.0, 2.0]);
        assert_eq!(d.len(), 2);
        assert!((d[0].1 as f64 - want[0]).abs() < 1e-6 && d[0].0 == 4);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // Probabilities ≈ [0.61, 0.22, 0.08, 0.05, 0.01] in order 4, 0, 1, 2, 3.
        let d = Sampler::new(params(|p| p.top_p = 0.8)).distribution(&LOGITS, &[]);
        assert_eq!(d.iter().map(|c| c.0).collect::<Vec<_>>(), vec![4, 0]);
        let d = Sampler::new(params(|p| p.top_p = 0.9)).distribution(&LOGITS, &[]);
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn min_p_drops_tokens_below_a_fraction_of_the_best() {
        // 0.2 × p(4): keeps 4 (1.0×) and 0 (e^-1 ≈ 0.37×), drops 1 (e^-2 ≈ 0.14×).
        let d = Sampler::new(params(|p| p.min_p = 0.2)).distribution(&LOGITS, &[]);
        assert_eq!(d.iter().map(|c| c.0).collect::<Vec<_>>(), vec![4, 0]);
    }

    #[test]
    fn temperature_scales_logits() {
        let d = Sampler::new(params(|p| p.temp = 0.5)).distribution(&LOGITS, &[]);
        let want = probs(&LOGITS.map(|l| l / 0.5));
        for (id, p) in d {
            assert!((p as f64 - want[id as usize]).abs() < 1e-6, "{id}");
        }
    }

    #[test]
    fn penalties_follow_llama_cpp() {
        let history = [4, 4, 3];
        let mut s = Sampler::new(params(|p| {
            p.repeat_penalty = 2.0;
            p.presence_penalty = 0.5;
            p.frequency_penalty = 0.25;
        }));
        let d = s.distribution(&LOGITS, &history);
        // 4: 3.0 / 2 - 2 × 0.25 - 0.5 = 0.5; 3: -1.0 × 2 - 0.25 - 0.5 = -2.75.
        let mut l = LOGITS;
        l[4] = 0.5;
        l[3] = -2.75;
        let want = probs(&l);
        for (id, p) in d {
            assert!((p as f64 - want[id as usize]).abs() < 1e-6, "{id}");
        }
        // Only the last repeat_last_n tokens count.
        let mut s = Sampler::new(params(|p| {
            p.repeat_penalty = 2.0;
            p.repeat_last_n = 1;
        }));
        let d = s.distribution(&LOGITS, &history);
        let mut l = LOGITS;
        l[3] = -2.0;
        let want = probs(&l);
        for (id, p) in d {
            assert!((p as f64 - want[id as usize]).abs() < 1e-6, "{id}");
        }
    }

    #[test]
    fn same_seed_same_tokens_and_draws_follow_the_distribution() {
        let draw = |seed| {
            let mut s = Sampler::new(params(|p| p.seed = seed));
            (0..4000)
                .map(|_| s.sample(&LOGITS, &[]))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let want = probs(&LOGITS);
        for id in 0..5u32 {
            let freq = a.iter().filter(|&&t| t == id).count() as f64 / a.len() as f64;
            // 4000 draws: 3 standard errors of a proportion is at most 0.024.
            assert!(
                (freq - want[id as usize]).abs() < 0.024,
                "id {id}: {freq} vs {}",
                want[id as usize]
            );
        }
    }
}
