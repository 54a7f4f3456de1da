//! llama-bench's measurements: prompt processing (`ppN`: N tokens in batches from an empty
//! cache) and token generation (`tgN`: N tokens one at a time from an empty cache), timed over
//! repetitions after a warm-up.

use crate::sampling::SplitMix64;
use crate::session::{Result, Session};
use crate::tokenizer::TokenId;
use std::time::Instant;

/// One llama-bench test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Evaluate this many prompt tokens (in batches of the session's `n_batch`).
    Prompt(usize),
    /// Evaluate this many tokens one by one, each after the one before.
    Generate(usize),
}

impl Test {
    /// llama-bench's name: `pp512`, `tg128`.
    pub fn name(self) -> String {
        match self {
            Test::Prompt(n) => format!("pp{n}"),
            Test::Generate(n) => format!("tg{n}"),
        }
    }

    pub fn n_prompt(self) -> usize {
        match self {
            Test::Prompt(n) => n,
            Test::Generate(_) => 0,
        }
    }

    pub fn n_gen(self) -> usize {
        match self {
            Test::Prompt(_) => 0,
            Test::Generate(n) => n,
        }
    }

    fn n_tokens(self) -> usize {
        self.n_prompt() + self.n_gen()
    }
}

/// The timings of one test.
#[derive(Debug, Clone)]
pub struct Samples {
    pub test: Test,
    /// Wall time of each repetition, in nanoseconds.
    pub ns: Vec<u64>,
}

impl Samples {
    /// Tokens per second of each repetition.
    pub fn ts(&self) -> Vec<f64> {
        let n = self.test.n_tokens() as f64;
        self.ns.iter().map(|&ns| n * 1e9 / ns as f64).collect()
    }

    pub fn avg_ns(&self) -> f64 {
        mean(&self.ns.iter().map(|&v| v as f64).collect::<Vec<_>>())
    }

    pub fn stddev_ns(&self) -> f64 {
        stddev(&self.ns.iter().map(|&v| v as f64).collect::<Vec<_>>())
    }

    pub fn avg_ts(&self) -> f64 {
        mean(&self.ts())
    }

    pub fn stddev_ts(&self) -> f64 {
        stddev(&self.ts())
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (n - 1), as llama-bench reports it.
fn stddev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Token ids for the benchmark: a BOS, then uniformly random ids (as llama-bench), from a
/// fixed-seed generator so every run evaluates the same tokens.
pub struct Tokens {
    rng: SplitMix64,
    n_vocab: u32,
    bos: Option<TokenId>,
}

impl Tokens {
    pub fn new(n_vocab: usize, bos: Option<TokenId>) -> Tokens {
        Tokens {
            rng: SplitMix64::new(0),
            n_vocab: n_vocab.max(1) as u32,
            bos,
        }
    }

    fn next_id(&mut self) -> TokenId {
        (self.rng.next_u64() % self.n_vocab as u64) as TokenId
    }

    /// `n` ids, starting with BOS when the model has one.
    pub fn take(&mut self, n: usize) -> Vec<TokenId> {
        (0..n)
            .map(|i| match (i, self.bos) {
                (0, Some(b)) => b,
                _ => self.next_id(),
            })
            .collect()
    }
}

/// Runs `test` once on an empty session and returns its wall time in nanoseconds.
pub fn run_once(session: &mut Session<'_>, test: Test, tokens: &mut Tokens) -> Result<u64> {
    session.clear();
    let ids = tokens.take(test.n_tokens());
    let t = Instant::now();
    match test {
        Test::Prompt(_) => session.eval(&ids)?,
        Test::Generate(_) => {
            for id in ids {
                session.eval(&[id])?;
            }
        }
    }
    Ok(t.elapsed().as_nanos() as u64)
}

/// Runs `test` `reps` times, after one warm-up run of the same shape (llama-bench warms up
/// with one batch of the prompt, or one generated token) unless `warmup` is false.
pub fn run(
    session: &mut Session<'_>,
    test: Test,
    reps: usize,
    warmup: bool,
    tokens: &mut Tokens,
) -> Result<Samples> {
    if warmup {
        let w = match test {
            Test::Prompt(n) => Test::Prompt(n.min(session.params().n_batch)),
            Test::Generate(_) => Test::Generate(1),
        };
        run_once(session, w, tokens)?;
    }
    let ns = (0..reps.max(1))
        .map(|_| run_once(session, test, tokens))
        .collect::<Result<Vec<_>>>()?;
    Ok(Samples { test, ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_are_llama_bench_s() {
        let s = Samples {
            test: Test::Generate(100),
            ns: vec![1_000_000_000, 2_000_000_000],
        };
        assert_eq!(s.ts(), vec![100.0, 50.0]);
        assert_eq!(s.avg_ts(), 75.0);
        assert!((s.stddev_ts() - 35.355_339).abs() < 1e-5);
        assert_eq!(s.avg_ns(), 1.5e9);
        assert_eq!(Test::Prompt(512).name(), "pp512");
    }

    #[test]
    fn tokens_start_with_bos_and_stay_in_the_vocabulary() {
        let mut t = Tokens::new(1000, Some(2));
        let ids = t.take(500);
        assert_eq!(ids[0], 2);
        assert!(ids.iter().all(|&i| i < 1000));
        // Not constant: the ids are spread over the vocabulary.
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert!(distinct.len() > 300, "{}", distinct.len());
        assert_ne!(Tokens::new(1000, None).take(1), vec![2]);
    }
}
