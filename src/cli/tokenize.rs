//! `gemlet tokenize`: the model's token ids for a text, like llama-tokenize.

use super::CliError;
use crate::gguf::Gguf;
use crate::tokenizer::Tokenizer;
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// Model file (default: the default model).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// The text to tokenize.
    #[arg(required_unless_present = "jsonl")]
    pub text: Option<String>,
    /// Print the ids as one JSON array.
    #[arg(long)]
    pub ids: bool,
    /// Do not add the BOS token.
    #[arg(long = "no-bos")]
    pub no_bos: bool,
    /// Tokenize special-token texts (e.g. `<start_of_turn>`) as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    /// Read one JSON object per line from stdin, with a "text" field; write {"ids": [...]} per line.
    #[arg(long, conflicts_with = "text")]
    pub jsonl: bool,
}

pub fn run(args: &TokenizeArgs) -> Result<(), CliError> {
    let path = super::model_path(args.model.as_deref())?;
    let g = Gguf::open(&path)?;
    let tok = Tokenizer::from_gguf(&g)?;
    let encode = |text: &str| tok.encode(text, !args.no_bos, !args.no_parse_special);
    if args.jsonl {
        let mut out = String::new();
        let result = super::stdin_texts(|_, text| {
            let ids = encode(text).map_err(|e| CliError::Usage(e.to_string()))?;
            // Written directly: a JSON value per id would cost ~30 bytes each.
            out.push_str("{\"ids\":[");
            for (i, id) in ids.iter().enumerate() {
                let _ = write!(out, "{}{id}", if i == 0 { "" } else { "," });
            }
            out.push_str("]}\n");
            if out.len() > 1 << 16 {
                super::print(&out)?;
                out.clear();
            }
            Ok(())
        });
        // The lines before a bad one keep their output.
        super::print(&out)?;
        return result;
    }
    let ids = encode(args.text.as_deref().unwrap_or_default())?;
    let mut out = String::new();
    if args.ids {
        let _ = writeln!(out, "{}", json!(ids));
    } else {
        for &id in &ids {
            let piece = String::from_utf8_lossy(tok.piece(id)?).into_owned();
            let _ = writeln!(out, "{id:>6} -> {piece:?}");
        }
    }
    super::print(&out)
}
