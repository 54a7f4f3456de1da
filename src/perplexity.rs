//! Perplexity with llama-perplexity's method, the number users compare quantizations with: the
//! text's tokens (BOS first) are cut into chunks of `n_ctx`; each chunk starts again with BOS,
//! is evaluated from an empty cache, and only its second half is scored, so every scored token
//! has at least n_ctx/2 tokens of context.

use crate::session::{Result, Session, SessionError};
use crate::tokenizer::TokenId;

#[derive(Debug, Clone)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub ppl: f64,
    /// llama-perplexity's "+/-": ppl × the standard error of the mean NLL.
    pub error: f64,
    /// Running estimate after each chunk, as llama-perplexity prints it ("[1]12.34,").
    pub running: Vec<f64>,
    pub chunks: usize,
    pub scored_tokens: usize,
}

/// log p(token) under `logits`, computed as llama-perplexity does (f32 logits, f64 sum).
fn log_prob(logits: &[f32], token: TokenId) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    (logits[token as usize] - max) as f64 - sum.ln()
}

/// Scores `tokens` (the whole text, BOS first) in chunks of the session's context, at most
/// `max_chunks`. `on_chunk` sees each chunk's running estimate as it completes.
pub fn perplexity(
    session: &mut Session<'_>,
    tokens: &[TokenId],
    max_chunks: Option<usize>,
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    let n_ctx = session.params().n_ctx;
    let available = tokens.len() / n_ctx;
    if n_ctx < 2 {
        return Err(SessionError::ContextTooSmall { n_ctx, needed: 2 });
    }
    if tokens.len() < 2 * n_ctx {
        return Err(SessionError::TextTooShort {
            needed: 2 * n_ctx,
            got: tokens.len(),
            n_ctx,
        });
    }
    let n_chunks = max_chunks.map_or(available, |m| m.min(available));
    let bos = session.model().tokenizer().bos();
    let n_vocab = session.model().config().dims.n_vocab;
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    let mut running = Vec::with_capacity(n_chunks);
    for chunk in 0..n_chunks {
        let mut ids = tokens[chunk * n_ctx..(chunk + 1) * n_ctx].to_vec();
        if let Some(b) = bos {
            ids[0] = b;
        }
        session.clear();
        session.eval_from(&ids, first)?;
        let logits = session.logits();
        // Row r holds the logits at position first + r, which predict ids[first + r + 1].
        for r in 0..n_ctx - 1 - first {
            let lp = log_prob(&logits[r * n_vocab..(r + 1) * n_vocab], ids[first + r + 1]);
            nll -= lp;
            nll2 += lp * lp;
        }
        count += n_ctx - 1 - first;
        let estimate = (nll / count as f64).exp();
        running.push(estimate);
        on_chunk(chunk + 1, estimate);
    }
    session.clear();
    let mean = nll / count as f64;
    let var = nll2 / count as f64 - mean * mean;
    let ppl = mean.exp();
    let error = if var > 0.0 && count > 1 {
        (var / (count - 1) as f64).sqrt() * ppl
    } else {
        0.0
    };
    Ok(Perplexity {
        ppl,
        error,
        running,
        chunks: n_chunks,
        scored_tokens: count,
    })
}
