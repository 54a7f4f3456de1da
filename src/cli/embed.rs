//! `gemlet embed`: the embedding of each text, as llama-embedding computes it, one JSON line
//! per input.

use super::args::{RepackArgs, RunArgs};
use super::CliError;
use crate::embedding::Normalize;
use crate::model::{Model, Pooling};
use crate::session::{Session, SessionParams};
use std::fmt::Write as _;

#[derive(clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Context size in tokens, the longest text (default: the model's training context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// Pooling of the tokens' hidden states: none, mean, cls or last (default: the model's).
    #[arg(long = "pooling", value_parser = pooling)]
    pub pooling: Option<Pooling>,
    /// Normalisation: l2 (default), none, max (int16 range) or taxicab.
    #[arg(long = "normalize", value_parser = normalize_name)]
    pub normalize: Option<Normalize>,
    /// llama-embedding's normalisation number: -1 none, 0 max absolute, 1 taxicab,
    /// 2 euclidean, >2 p-norm.
    #[arg(long = "embd-normalize", allow_negative_numbers = true, value_parser = normalize_number,
          conflicts_with = "normalize")]
    pub embd_normalize: Option<Normalize>,
    /// One text to embed; without it, stdin holds one JSON object per line with a "text"
    /// field, and each gets a line {"embedding": [...]}.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub repack: RepackArgs,
}

fn pooling(s: &str) -> Result<Pooling, String> {
    Pooling::from_name(s).ok_or_else(|| format!("expected one of {}", Pooling::NAMES.join(", ")))
}

fn normalize_name(s: &str) -> Result<Normalize, String> {
    Normalize::from_name(s).ok_or_else(|| "expected l2, none, max or taxicab".into())
}

fn normalize_number(s: &str) -> Result<Normalize, String> {
    s.parse()
        .ok()
        .and_then(Normalize::from_llama)
        .ok_or_else(|| "expected -1, 0, 1, 2 or a p-norm up to 64".into())
}

pub fn run(args: &EmbedArgs) -> Result<(), CliError> {
    let path = super::model_path(args.run.model.as_deref())?;
    let model = Model::load(&path)?;
    let c = model.config();
    let n_ctx = match args.ctx_size {
        0 => c.dims.n_ctx_train,
        n => n,
    };
    // Each text is one batch (bidirectional attention sees all of it at once).
    let mut session = Session::new(
        &model,
        SessionParams {
            n_ctx,
            n_batch: n_ctx,
            repack: args.repack.mode(),
            ..args.run.session_params()
        },
    )?;
    let pooling = args
        .pooling
        .or(c.embedding.as_ref().map(|h| h.pooling))
        .unwrap_or(Pooling::None);
    let norm = args
        .normalize
        .or(args.embd_normalize)
        .unwrap_or(Normalize::L2);
    let n_embd = c.dims.n_embd;
    let mut embed = |text: &str| -> Result<String, CliError> {
        let tokens = model.tokenizer().encode(text, true, false)?;
        let mut e = session.embed(&tokens, pooling)?.to_vec();
        for row in e.chunks_mut(n_embd) {
            norm.apply(row);
        }
        Ok(json_line(&e, n_embd, pooling == Pooling::None))
    };
    match &args.prompt {
        Some(text) => super::print(&embed(text)?),
        None => super::stdin_texts(|_, text| super::print(&embed(text)?)),
    }
}

/// `{"embedding":[...]}`, or with one embedding per token an array of them; numbers in the
/// shortest form that reads back as the same f32.
fn json_line(e: &[f32], n_embd: usize, per_token: bool) -> String {
    let row = |out: &mut String, r: &[f32]| {
        out.push('[');
        for (i, x) in r.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{x:?}");
        }
        out.push(']');
    };
    let mut out = String::from("{\"embedding\":");
    if per_token {
        out.push('[');
        for (i, r) in e.chunks(n_embd).enumerate() {
            if i > 0 {
                out.push(',');
            }
            row(&mut out, r);
        }
        out.push(']');
    } else {
        row(&mut out, e);
    }
    out.push_str("}\n");
    out
}
