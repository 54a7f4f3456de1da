//! `gemlet chat`: an interactive conversation on a terminal; with stdin piped, one answer.

use super::args::{ModelArgs, SamplingArgs};
use super::{fmt, CliError};
use crate::chat::{Chat, ChatTemplate, Overflow, TurnStats};
use crate::model::{Census, Model};
use crate::sampling::Sampler;
use crate::session::{Session, Stop};
use rustyline::error::ReadlineError;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The first user message (with stdin piped: the only one; stdin is read when absent).
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// System prompt.
    #[arg(long = "system-prompt")]
    pub system_prompt: Option<String>,
    /// Tokens per reply at most (-1: until the end of the turn or of the context).
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_negative_numbers = true)]
    pub n_predict: i64,
    /// When the context is full, drop the oldest exchanges (the system prompt stays) and
    /// re-evaluate the rest. This is the default.
    #[arg(long = "context-shift", overrides_with = "no_context_shift")]
    pub context_shift: bool,
    /// When the context is full, refuse the message instead (use /clear to start over).
    #[arg(long = "no-context-shift")]
    pub no_context_shift: bool,
    /// Do not end replies at end-of-turn tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// A Jinja chat template to use instead of the model's.
    #[arg(long = "chat-template-file")]
    pub chat_template_file: Option<PathBuf>,
}

const HELP: &str = "\
commands:
  /help          this text
  /clear         start a new conversation (the system prompt stays)
  /system TEXT   set the system prompt (/system alone shows it; /system - removes it)
  /stats         figures of the last reply and the context used
  /exit          leave (also Ctrl-D, or Ctrl-C at the prompt)
input: end a line with \\ to continue it; \"\"\" on a line of its own opens and closes a block.
Ctrl-C during a reply stops it; the partial reply stays in the conversation.";

pub fn run(args: &ChatArgs) -> Result<(), CliError> {
    let path = super::model_path(args.model.run.model.as_deref())?;
    let model = load_with_spinner(&path, args.model.open_options())?;
    let (template, template_name) = template(&model, args.chat_template_file.as_deref())?;
    let overflow = if args.no_context_shift {
        Overflow::Stop
    } else {
        Overflow::DropOldest
    };
    let session = Session::new(&model, args.model.session_params())?;
    let mut chat = Chat::new(session, template, overflow);
    if let Some(s) = &args.system_prompt {
        chat.set_system(s);
    }
    let mut sampler = Sampler::new(args.sampling.params()?);
    if args.ignore_eos {
        sampler.ban(model.tokenizer().eog());
    }
    let mut turn = Turn {
        chat,
        sampler,
        n_predict: super::generate::n_predict(args.n_predict),
        overflow,
    };
    if !std::io::stdin().is_terminal() {
        return turn.answer_once(args.prompt.as_deref());
    }
    banner(&model, &turn.chat, &path, &template_name);
    turn.converse(args.prompt.clone())
}

/// The model's chat template, or the file given instead, and how the banner names it.
fn template(
    model: &Model,
    file: Option<&std::path::Path>,
) -> Result<(ChatTemplate, String), CliError> {
    let template = match file {
        Some(f) => ChatTemplate::from_file(model, f),
        None => ChatTemplate::for_model(model, None),
    }
    .map_err(crate::chat::ChatError::from)?;
    let name = match (file, template.is_builtin()) {
        (Some(f), _) => f.display().to_string(),
        (None, true) => "Gemma turns (the file has no chat template)".into(),
        (None, false) => crate::chat::TEMPLATE_KEY.into(),
    };
    Ok((template, name))
}

/// A conversation and how its replies are generated.
struct Turn<'m> {
    chat: Chat<'m>,
    sampler: Sampler,
    n_predict: usize,
    overflow: Overflow,
}

impl Turn<'_> {
    /// Piped: one message (`-p`, or all of stdin), and only the reply printed.
    fn answer_once(&mut self, prompt: Option<&str>) -> Result<(), CliError> {
        let message = match prompt {
            Some(p) => p.to_string(),
            None => {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(CliError::Input)?;
                s
            }
        };
        if message.trim().is_empty() {
            return Err(CliError::Usage("no message: stdin was empty".into()));
        }
        // Output that cannot be written stops the reply.
        let stop = AtomicBool::new(false);
        let mut out = super::Stdout::new();
        let stats = self
            .chat
            .send(&message, &mut self.sampler, self.n_predict, &stop, |t| {
                if !out.write(t) {
                    stop.store(true, Ordering::Relaxed);
                }
            })?;
        out.finish()?;
        if stats.stop == Stop::ContextFull {
            eprintln!(
                "(the reply stopped at the end of the context: {} positions; raise -c)",
                stats.n_ctx
            );
        }
        Ok(())
    }

    /// On a terminal: messages and commands until /exit, Ctrl-D, or Ctrl-C at the prompt.
    fn converse(&mut self, first: Option<String>) -> Result<(), CliError> {
        let stop = Arc::new(AtomicBool::new(false));
        let replying = Arc::new(AtomicBool::new(false));
        {
            // Ctrl-C while a reply streams stops it; at the prompt the line editor sees the
            // key itself (raw mode), so the handler never runs there.
            // On a terminal the line editor does not take raw mode on (TERM=dumb), Ctrl-C at
            // the prompt arrives here too: then it leaves, as it does in raw mode.
            let (stop, replying) = (stop.clone(), replying.clone());
            ctrlc::set_handler(move || {
                if replying.load(Ordering::Relaxed) {
                    stop.store(true, Ordering::Relaxed);
                } else {
                    std::process::exit(130);
                }
            })
            .map_err(|e| CliError::Usage(format!("installing the Ctrl-C handler: {e}")))?;
        }
        let mut editor = rustyline::DefaultEditor::new()
            .map_err(|e| CliError::Usage(format!("starting the line editor: {e}")))?;
        let mut last: Option<TurnStats> = None;
        let mut pending = first;
        loop {
            let line = match pending.take() {
                Some(p) => {
                    super::print(&format!("> {p}\n"))?;
                    p
                }
                None => match read_message(&mut editor)? {
                    Some(l) => l,
                    None => break,
                },
            };
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if let Some(cmd) = text.strip_prefix('/') {
                if !self.command(cmd, last.as_ref()) {
                    break;
                }
                continue;
            }
            stop.store(false, Ordering::Relaxed);
            replying.store(true, Ordering::Relaxed);
            let mut out = super::Stdout::new();
            let result = self
                .chat
                .send(text, &mut self.sampler, self.n_predict, &stop, |t| {
                    if !out.write(t) {
                        stop.store(true, Ordering::Relaxed);
                    }
                });
            replying.store(false, Ordering::Relaxed);
            out.finish()?;
            match result {
                Ok(stats) => {
                    self.report(&stats);
                    last = Some(stats);
                }
                Err(e) => eprintln!("error: {e}"),
            }
        }
        Ok(())
    }

    /// Runs the command `cmd` (the line after its `/`); false for /exit.
    fn command(&mut self, cmd: &str, last: Option<&TurnStats>) -> bool {
        let (name, rest) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
        match name {
            "exit" | "quit" | "bye" => return false,
            "help" | "?" => eprintln!("{HELP}"),
            "clear" => {
                self.chat.clear();
                eprintln!("(new conversation)");
            }
            "system" => match rest.trim() {
                "" => eprintln!("system prompt: {}", self.chat.system().unwrap_or("(none)")),
                "-" => {
                    self.chat.set_system("");
                    eprintln!("(system prompt removed)");
                }
                s => {
                    self.chat.set_system(s);
                    eprintln!("(system prompt set)");
                }
            },
            "stats" => eprintln!("{}", stats_text(last, &self.chat)),
            _ => eprintln!("unknown command /{name}; /help lists them"),
        }
        true
    }

    /// What the user should know after a reply: why it stopped early, dropped exchanges.
    fn report(&self, stats: &TurnStats) {
        match stats.stop {
            Stop::Interrupted => eprintln!("(stopped)"),
            Stop::ContextFull => eprintln!(
                "(the context is full: {} of {} positions; the next message {})",
                stats.n_past,
                stats.n_ctx,
                if self.overflow == Overflow::DropOldest {
                    "drops the oldest exchanges"
                } else {
                    "is refused: /clear starts over"
                }
            ),
            Stop::Limit | Stop::EndOfGeneration => {}
        }
        if stats.dropped_turns > 0 {
            eprintln!(
                "(dropped the {} oldest exchange(s) to fit the context)",
                stats.dropped_turns
            );
        }
    }
}

/// A user message from the terminal: one line, lines joined by a trailing `\`, or a `"""`
/// block. None at Ctrl-D or Ctrl-C.
fn read_message(editor: &mut rustyline::DefaultEditor) -> Result<Option<String>, CliError> {
    let mut lines: Vec<String> = Vec::new();
    let mut block = false;
    loop {
        let prompt = if lines.is_empty() && !block {
            "> "
        } else {
            "… "
        };
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Ok(None),
            Err(e) => return Err(CliError::Input(std::io::Error::other(e))),
        };
        if line.trim() == "\"\"\"" {
            if block {
                break;
            }
            block = true;
            continue;
        }
        if block {
            lines.push(line);
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => lines.push(head.to_string()),
            None => {
                lines.push(line);
                break;
            }
        }
    }
    let message = lines.join("\n");
    if !message.trim().is_empty() {
        let _ = editor.add_history_entry(message.as_str());
    }
    Ok(Some(message))
}

/// Loads the model, with a spinner when stderr is a terminal.
fn load_with_spinner(
    path: &std::path::Path,
    opts: crate::gguf::OpenOptions,
) -> Result<Model, CliError> {
    if !std::io::stderr().is_terminal() {
        return Ok(Model::load_with(path, opts)?);
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!("loading {}", path.display()));
    spinner.enable_steady_tick(Duration::from_millis(80));
    let model = Model::load_with(path, opts);
    spinner.finish_and_clear();
    Ok(model?)
}

fn banner(model: &Model, chat: &Chat<'_>, path: &std::path::Path, template: &str) {
    let c = model.config();
    let p = chat.session().params();
    let census = Census::of(model.gguf());
    let plan = chat.session().memory_plan();
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    eprintln!(
        "gemlet {} · {name} ({}, {} parameters)\n\
         context {} · {} threads · memory {} mapped weights + {} KV cache + ~{} compute\n\
         template: {template}\n\
         /help for commands · Ctrl-C stops a reply · Ctrl-D or /exit leaves",
        env!("CARGO_PKG_VERSION"),
        c.arch.name(),
        fmt::short_count(census.parameter_count),
        p.n_ctx,
        p.n_threads,
        fmt::bytes(plan.weights_bytes),
        fmt::bytes(chat.session().memory_bytes().0 as u64),
        fmt::bytes(plan.compute_bytes),
    );
}

fn stats_text(last: Option<&TurnStats>, chat: &Chat<'_>) -> String {
    let s = chat.session();
    let used = format!(
        "context: {} of {} positions used",
        s.n_past(),
        s.params().n_ctx
    );
    match last {
        None => format!("no reply yet; {used}"),
        Some(t) => format!(
            "last reply: prompt {} tokens evaluated ({} reused from the cache) at {:.1} t/s; \
             first token after {:.0} ms; {} tokens generated at {:.1} t/s\n{used}",
            t.prompt_tokens,
            t.reused_tokens,
            t.prompt_tps(),
            t.first_token_ms,
            t.generated_tokens,
            t.generate_tps(),
        ),
    }
}
