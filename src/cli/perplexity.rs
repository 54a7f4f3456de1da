//! `gemlet perplexity`: llama-perplexity's measure of a model on a text.

use super::CliError;
use crate::model::Model;
use crate::perplexity::perplexity;
use crate::session::{default_threads, Session, SessionParams};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct PerplexityArgs {
    /// Model file (default: ~/.cache/gemlet/models/gemma-3-270m-q4_k_m.gguf).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Tokens per chunk; the second half of each chunk is scored.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Batch size.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// Threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// The text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Score at most this many chunks (default: all).
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
}

pub fn run(args: &PerplexityArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    let path = super::model_path(args.model.as_deref())?;
    let model = Model::load(&path)?;
    let n_ctx = args.ctx_size;
    let mut session = Session::new(
        &model,
        SessionParams {
            n_ctx,
            n_batch: args.batch_size.min(n_ctx),
            n_threads: args.threads.unwrap_or_else(default_threads),
            ..SessionParams::default()
        },
    )?;
    let tokens = model.tokenizer().encode(&text, true, true)?;
    eprintln!(
        "perplexity: {} tokens, {} chunks of {n_ctx}, batch {}, {} threads",
        tokens.len(),
        args.chunks
            .map_or(tokens.len() / n_ctx, |c| c.min(tokens.len() / n_ctx)),
        session.params().n_batch,
        session.params().n_threads
    );
    let start = Instant::now();
    let result = perplexity(&mut session, &tokens, n_ctx, args.chunks, |i, est| {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "[{i}]{est:.4},");
        let _ = out.flush();
    })?;
    super::print(&format!(
        "\nFinal estimate: PPL = {:.4} +/- {:.5}\n",
        result.ppl, result.error
    ))?;
    eprintln!(
        "{} tokens scored in {:.1} s",
        result.scored_tokens,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
