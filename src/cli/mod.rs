//! The `gemlet` command line: thin commands over the library.

mod args;
mod bench;
mod bundle;
mod chat;
mod embed;
mod fmt;
mod generate;
mod inspect;
mod perplexity;
mod tokenize;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Run quantized Gemma models from GGUF files on laptops and Raspberry-Pi-class CPUs.
#[derive(Parser)]
#[command(name = "gemlet", version = version(), long_version = version())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with the model on a terminal; with stdin piped, answer once and exit.
    Chat(chat::ChatArgs),
    /// Write one executable holding this program and a model (run it without -m to use it).
    Bundle(bundle::BundleArgs),
    /// Show what a GGUF model file holds and what running it will take.
    Inspect(inspect::InspectArgs),
    /// Print the token ids of a text (llama-tokenize's flags).
    Tokenize(tokenize::TokenizeArgs),
    /// Continue a prompt, printing tokens as they are produced.
    Generate(generate::GenerateArgs),
    /// Embeddings of texts (llama-embedding's method): one JSON line per input.
    Embed(embed::EmbedArgs),
    /// Perplexity of the model on a text (llama-perplexity's method and output).
    Perplexity(perplexity::PerplexityArgs),
    /// Measure prompt processing and generation speed (llama-bench's tests and output).
    Bench(bench::BenchArgs),
}

/// Errors of the command line; the message is printed after "error: ".
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Chat(#[from] crate::chat::ChatError),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error("writing output: {0}")]
    Output(std::io::Error),
    #[error("reading input: {0}")]
    Input(std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error(
        "the default model {0} is missing: fetch it with `scripts/fetch-model.sh`, or pass -m FILE"
    )]
    NoModel(PathBuf),
}

/// Where models live: `~/.cache/gemlet/models`.
pub fn models_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/gemlet/models")
}

/// The model to use: `-m FILE`, or the default model, which must exist.
fn model_path(arg: Option<&Path>) -> Result<PathBuf, CliError> {
    match arg {
        Some(p) => Ok(p.to_path_buf()),
        None => {
            // A bundle runs the model inside itself.
            if let Some(exe) = bundled_model() {
                return Ok(exe);
            }
            let p = models_dir().join("gemma-3-270m-q4_k_m.gguf");
            if p.is_file() {
                Ok(p)
            } else {
                Err(CliError::NoModel(p))
            }
        }
    }
}

/// The running executable, if it carries a model (`gemlet bundle`).
fn bundled_model() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut f = std::fs::File::open(&exe).ok()?;
    let len = f.metadata().ok()?.len();
    crate::gguf::bundle::find(&mut f, len).ok()?.map(|_| exe)
}

/// Why the running executable is a bundle whose model cannot be found, if it is one.
fn damaged_bundle() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let mut f = std::fs::File::open(&exe).ok()?;
    let len = f.metadata().ok()?.len();
    crate::gguf::bundle::damage(&mut f, len).ok()?
}

fn version() -> &'static str {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            crate::ggml::build_info()
        )
    })
}

/// Writes to stdout; a closed pipe (`gemlet inspect x | head`) is not an error.
fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
        _ => Ok(()),
    }
}

/// Calls `each` with the line number and the "text" field of every non-blank line of stdin,
/// each a JSON object; stops at the first error (the lines before it keep their output).
fn stdin_texts(mut each: impl FnMut(usize, &str) -> Result<(), CliError>) -> Result<(), CliError> {
    use std::io::BufRead;
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(CliError::Input)?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| CliError::Usage(format!("stdin line {n}: {e}")))?;
        let text = v["text"]
            .as_str()
            .ok_or_else(|| CliError::Usage(format!("stdin line {n}: no string field \"text\"")))?;
        each(n, text).map_err(|e| match e {
            CliError::Usage(m) => CliError::Usage(format!("stdin line {n}: {m}")),
            e => e,
        })?;
    }
    Ok(())
}

/// Text streamed to stdout as it is generated. The first failed write ends the stream: a closed
/// pipe (`gemlet generate ... | head -c 10`) because the reader is done, any other error (a full
/// disk) to be reported by [`Stdout::finish`].
struct Stdout {
    out: std::io::StdoutLock<'static>,
    failed: Option<std::io::Error>,
}

impl Stdout {
    fn new() -> Stdout {
        Stdout {
            out: std::io::stdout().lock(),
            failed: None,
        }
    }

    /// Writes and flushes `text`; false once writing has failed.
    fn write(&mut self, text: &str) -> bool {
        if self.failed.is_none() {
            if let Err(e) = self
                .out
                .write_all(text.as_bytes())
                .and_then(|_| self.out.flush())
            {
                self.failed = Some(e);
            }
        }
        self.failed.is_none()
    }

    /// Ends the stream with a newline; the write error, unless it was a closed pipe.
    fn finish(mut self) -> Result<(), CliError> {
        self.write("\n");
        match self.failed {
            Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Output(e)),
            _ => Ok(()),
        }
    }
}

/// Rewrites llama.cpp's flags that are several letters after one dash (`-ctk`), which clap's
/// short options cannot be, to their long names: only where a flag stands, never as the value
/// of the option before it (`-p -ctk` is a prompt) nor after `--`.
fn rewrite_llama_flags(args: &mut [std::ffi::OsString]) {
    use clap::CommandFactory;
    let cli = Cli::command();
    let sub = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| cli.find_subcommand(name));
    let takes_value = |flag: &str| {
        sub.is_some_and(|s| {
            s.get_arguments().any(|a| {
                let long = flag.strip_prefix("--").is_some_and(|l| {
                    a.get_long() == Some(l) || a.get_all_aliases().is_some_and(|al| al.contains(&l))
                });
                let short = flag.strip_prefix('-').and_then(|c| {
                    let mut c = c.chars();
                    c.next().filter(|_| c.next().is_none())
                });
                let short = short.is_some_and(|c| a.get_short() == Some(c));
                (long || short) && a.get_action().takes_values()
            })
        })
    };
    let mut value_next = false;
    for a in args.iter_mut().skip(2) {
        if std::mem::take(&mut value_next) {
            continue;
        }
        if a == "--" {
            break;
        }
        if let Some((_, long)) = args::LLAMA_SHORT_FLAGS.iter().find(|(s, _)| a == s) {
            *a = long.into();
        }
        value_next = a
            .to_str()
            .is_some_and(|s| s.starts_with('-') && !s.contains('=') && takes_value(s));
    }
}

/// Parses the arguments, runs the command, and turns an error into a message and exit code 1.
pub fn main() -> ExitCode {
    crate::ggml::link_cpu_check();
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // A bundle started with no command (or only flags) chats with the model inside it.
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("-");
    let asks_program = ["-h", "--help", "-V", "--version"].contains(&first);
    if first.starts_with('-') && !asks_program {
        if bundled_model().is_some() {
            args.insert(1, "chat".into());
        } else if let Some(why) = damaged_bundle() {
            // Not clap's usage error: the user ran a bundle, which has lost its model.
            eprintln!("error: this program carries a model (gemlet bundle), but {why}; make it again with `gemlet bundle`");
            return ExitCode::FAILURE;
        }
    }
    rewrite_llama_flags(&mut args);
    let cli = Cli::parse_from(args);
    let result = match &cli.command {
        Command::Bundle(args) => bundle::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::Repack;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("gemlet").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    fn rewritten(args: &[&str]) -> Vec<String> {
        let mut a: Vec<std::ffi::OsString> = std::iter::once("gemlet")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        rewrite_llama_flags(&mut a);
        a.into_iter()
            .skip(1)
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    #[test]
    fn llama_flags_are_rewritten_only_where_a_flag_stands() {
        assert_eq!(
            rewritten(&["generate", "-ctk", "q8_0", "-fa", "off"]),
            ["generate", "--cache-type-k", "q8_0", "--flash-attn", "off"]
        );
        // Values of the option before, and everything after `--`, are the user's text.
        assert_eq!(
            rewritten(&["generate", "-p", "-ctk", "-nr"]),
            ["generate", "-p", "-ctk", "--no-repack"]
        );
        assert_eq!(
            rewritten(&["generate", "--prompt", "-fa"]),
            ["generate", "--prompt", "-fa"]
        );
        assert_eq!(
            rewritten(&["tokenize", "--", "-nr"]),
            ["tokenize", "--", "-nr"]
        );
        assert_eq!(
            rewritten(&["generate", "--prompt=x", "-nr"]),
            ["generate", "--prompt=x", "--no-repack"]
        );
    }

    #[test]
    fn repack_flags() {
        for (flags, want) in [
            (&[][..], Repack::Auto),
            (&["--repack"], Repack::All),
            (&["--no-repack"], Repack::Off),
            (&["--repack", "--no-repack"], Repack::Off),
            (&["--no-repack", "--repack"], Repack::All),
        ] {
            let mut args = vec!["generate", "-p", "x"];
            args.extend(flags);
            let Command::Generate(g) = parse(&args) else {
                unreachable!()
            };
            assert_eq!(g.model.session_params().repack, want, "{flags:?}");
        }
        for (value, want) in [
            ("auto", Repack::Auto),
            ("1", Repack::All),
            ("0", Repack::Off),
        ] {
            let Command::Bench(b) = parse(&["bench", "--repack", value]) else {
                unreachable!()
            };
            assert_eq!(b.repack, want, "--repack {value}");
        }
        assert!(Cli::try_parse_from(["gemlet", "bench", "--repack", "2"]).is_err());
    }
}
