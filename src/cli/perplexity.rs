//! `gemlet perplexity`: llama-perplexity's measure of a model on a text.

use super::args::{RepackArgs, RunArgs};
use super::CliError;
use crate::model::Model;
use crate::perplexity::perplexity;
use crate::session::{Session, SessionParams};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Tokens per chunk (capped at the model's training context); the second half of each
    /// chunk is scored.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// The text file to score.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Score at most this many chunks (default: all).
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    #[command(flatten)]
    pub repack: RepackArgs,
}

pub fn run(args: &PerplexityArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    let path = super::model_path(args.run.model.as_deref())?;
    let model = Model::load(&path)?;
    let mut session = Session::new(
        &model,
        SessionParams {
            n_ctx: args.ctx_size,
            repack: args.repack.mode(),
            ..args.run.session_params()
        },
    )?;
    let tokens = model.tokenizer().encode(&text, true, true)?;
    let p = session.params();
    let available = tokens.len() / p.n_ctx;
    eprintln!(
        "perplexity: {} tokens, {} chunks of {}, batch {}, {} threads",
        tokens.len(),
        args.chunks.map_or(available, |c| c.min(available)),
        p.n_ctx,
        p.n_batch,
        p.n_threads
    );
    let start = Instant::now();
    let result = perplexity(&mut session, &tokens, args.chunks, |i, est| {
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
