//! `gemlet generate`: continue a prompt, printing tokens as they are produced.

use super::args::{ModelArgs, SamplingArgs};
use super::fmt::bytes;
use super::CliError;
use crate::model::Model;
use crate::sampling::Sampler;
use crate::session::Session;
use serde_json::json;
use std::time::Instant;

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: String,
    /// Tokens to generate at most (-1: until the end of generation or of the context).
    #[arg(
        short = 'n',
        long = "n-predict",
        default_value_t = 128,
        allow_negative_numbers = true
    )]
    pub n_predict: i64,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print one JSON object: prompt ids, generated ids, text and timings.
    #[arg(long)]
    pub json: bool,
    /// With --json: for every generated token, its K highest raw logits as "top_logits"
    /// ([[id, logit], ...] per token, best first).
    #[arg(long = "n-probs", default_value_t = 0, requires = "json",
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub n_probs: u16,
    /// Do not stop at end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
}

pub fn run(args: &GenerateArgs) -> Result<(), CliError> {
    let path = super::model_path(args.model.run.model.as_deref())?;
    let t_load = Instant::now();
    let model = Model::load_with(&path, args.model.open_options())?;
    let mut session = Session::new(&model, args.model.session_params())?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;

    let prompt_ids = model.tokenizer().encode(&args.prompt, true, true)?;
    let t_prompt = Instant::now();
    session.eval(&prompt_ids)?;
    let prompt_s = t_prompt.elapsed().as_secs_f64();

    let mut sampler = Sampler::new(args.sampling.params()?);
    if args.ignore_eos {
        sampler.ban(model.tokenizer().eog());
    }
    let mut text = String::new();
    let t_gen = Instant::now();
    let mut out = (!args.json).then(super::Stdout::new);
    // Time to first token: from the prompt's evaluation to the first sampled token.
    let mut ttft_ms = None;
    let n_probs = usize::from(args.n_probs);
    let generation =
        session.generate_with_top(&mut sampler, n_predict(args.n_predict), n_probs, |piece| {
            ttft_ms.get_or_insert_with(|| t_prompt.elapsed().as_secs_f64() * 1e3);
            text.push_str(piece);
            // Output that cannot be written ends generation.
            out.as_mut().is_none_or(|o| o.write(piece))
        })?;
    let ids = generation.ids;
    if let Some(out) = out {
        out.finish()?;
    }
    let gen_s = t_gen.elapsed().as_secs_f64();
    // Tokens evaluated for generation: all but the last sampled one (none: no speed).
    let n_eval = ids.len().saturating_sub(1);
    let prompt_tps = prompt_ids.len() as f64 / prompt_s;
    let gen_tps = if n_eval > 0 {
        n_eval as f64 / gen_s
    } else {
        0.0
    };
    let (n_repacked, repacked_bytes) = session.repacked();
    let huge_pages = session.model().gguf().huge_pages();
    if args.json {
        let mut j = json!({
            "prompt_ids": prompt_ids,
            "ids": ids,
            "text": text,
            "timings": {
                "load_ms": load_ms,
                "prompt_tokens": prompt_ids.len(),
                "prompt_tokens_per_s": prompt_tps,
                "time_to_first_token_ms": ttft_ms,
                "generated_tokens": ids.len(),
                "generate_tokens_per_s": gen_tps,
                "threads": session.params().n_threads,
            },
            "repacked": {
                "tensors": n_repacked,
                "bytes": repacked_bytes,
            },
            "huge_pages": huge_pages.map(|h| json!({
                "bytes": h.bytes,
                "possible": h.possible,
                "refaulted": h.refaulted,
            })),
        });
        if n_probs > 0 {
            j["top_logits"] = json!(generation.top_logits);
        }
        super::print(&format!("{j}\n"))?;
    } else {
        let repacked = if n_repacked > 0 {
            format!(
                " | {n_repacked} matrices repacked ({})",
                bytes(repacked_bytes as u64)
            )
        } else {
            String::new()
        };
        let huge = huge_pages
            .map(|h| {
                format!(
                    " | huge pages {} of {}{}",
                    bytes(h.bytes),
                    bytes(h.possible),
                    if h.refaulted {
                        " (file cache re-read)"
                    } else {
                        ""
                    }
                )
            })
            .unwrap_or_default();
        eprintln!(
            "\nload {load_ms:.0} ms | prompt {} tokens, {prompt_tps:.1} t/s | generated {} tokens, {gen_tps:.1} t/s | {} threads{repacked}{huge}",
            prompt_ids.len(),
            ids.len(),
            session.params().n_threads
        );
    }
    Ok(())
}

/// llama.cpp's `-n`: a count, or a negative number for no limit but the context's.
pub fn n_predict(n: i64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
