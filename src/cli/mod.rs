//! The `gemlet` command line: thin commands over the library.

mod fmt;
mod inspect;

use clap::{Parser, Subcommand};
use std::io::Write;
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
    /// Show what a GGUF model file holds and what running it will take.
    Inspect(inspect::InspectArgs),
}

/// Errors of the command line; the message is printed after "error: ".
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error("writing output: {0}")]
    Output(std::io::Error),
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

/// Parses the arguments, runs the command, and turns an error into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect(args) => inspect::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
