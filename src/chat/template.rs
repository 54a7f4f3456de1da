//! Chat templates: the GGUF's `tokenizer.chat_template` (Jinja, rendered with minijinja), or
//! Gemma's turn format when the file has none (base models ship without one).

use crate::model::Model;
use minijinja::{Environment, ErrorKind, Value};
use std::collections::BTreeMap;

/// The GGUF key that holds a model's Jinja chat template.
pub const TEMPLATE_KEY: &str = "tokenizer.chat_template";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// Instructions a template may execute per rendering: a real chat template takes some hundreds
/// per message, so this renders conversations of thousands of turns and stops a runaway loop
/// within a second.
pub const TEMPLATE_FUEL: u64 = 20_000_000;
/// Bytes a rendering may write: far more than any context holds.
pub const TEMPLATE_OUTPUT: usize = 64 << 20;

/// A writer that refuses to grow past [`TEMPLATE_OUTPUT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > TEMPLATE_OUTPUT {
            return Err(std::io::Error::other("template output too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{0} runs without end: it stopped after {1}")]
    Runaway(String, String),
    /// Where the template came from (its GGUF key or its file), and what is wrong.
    #[error("{0} is not a valid template: {1}")]
    Syntax(String, String),
    #[error("{0} failed to render the conversation: {1}")]
    Render(String, String),
    #[error("reading {TEMPLATE_KEY}: {0}")]
    Gguf(#[from] crate::gguf::GgufError),
}

pub type Result<T> = std::result::Result<T, TemplateError>;

/// How a conversation becomes the text the model continues.
pub struct ChatTemplate {
    kind: Kind,
    /// Where the template came from, for errors: its GGUF key, or the file it was read from.
    name: String,
    /// BOS text (`<bos>`), which templates write through `bos_token`.
    bos: String,
    eos: String,
}

enum Kind {
    Jinja {
        env: Box<Environment<'static>>,
        /// Whether the template renders a system message itself; when not (Gemma 1/2 raise an
        /// error for one), the system prompt is folded into the first user turn.
        supports_system: bool,
    },
    Gemma,
}

impl ChatTemplate {
    /// `source` (a Jinja template) if given, else the model's own template, or Gemma's turn
    /// format when the file has none.
    pub fn for_model(model: &Model, source: Option<&str>) -> Result<ChatTemplate> {
        Self::for_model_named(model, source.map(|s| (s, "the chat template")))
    }

    /// Like [`ChatTemplate::for_model`], with a template read from `path`, which its errors
    /// name.
    pub fn from_file(model: &Model, path: &std::path::Path) -> Result<ChatTemplate> {
        let name = path.display().to_string();
        let source = std::fs::read_to_string(path)
            .map_err(|e| TemplateError::Syntax(name.clone(), format!("reading it: {e}")))?;
        Self::for_model_named(model, Some((&source, &name)))
    }

    fn for_model_named(model: &Model, source: Option<(&str, &str)>) -> Result<ChatTemplate> {
        let tok = model.tokenizer();
        let text = |id: Option<u32>| {
            id.and_then(|id| tok.piece(id).ok())
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let (bos, eos) = (text(tok.bos()), text(tok.eos()));
        let g = model.gguf();
        match source {
            Some((src, name)) => ChatTemplate::jinja_named(src, &bos, &eos, name),
            None if g.get(TEMPLATE_KEY).is_some() => {
                ChatTemplate::jinja_named(&g.get_str(TEMPLATE_KEY)?, &bos, &eos, TEMPLATE_KEY)
            }
            None => Ok(ChatTemplate::gemma(&bos, &eos)),
        }
    }

    /// Gemma's turn format: `<start_of_turn>user\n…<end_of_turn>\n`, assistant turns as
    /// `model`, contents trimmed, a system prompt folded into the first user turn (as Gemma 3's
    /// own template does).
    pub fn gemma(bos: &str, eos: &str) -> ChatTemplate {
        ChatTemplate {
            kind: Kind::Gemma,
            name: "Gemma's turn format".into(),
            bos: bos.into(),
            eos: eos.into(),
        }
    }

    /// A Jinja template, with what Hugging Face's renderer offers templates: `bos_token`,
    /// `eos_token`, `raise_exception`, `add_generation_prompt` and Python string methods.
    pub fn jinja(source: &str, bos: &str, eos: &str) -> Result<ChatTemplate> {
        Self::jinja_named(source, bos, eos, "the chat template")
    }

    fn jinja_named(source: &str, bos: &str, eos: &str, name: &str) -> Result<ChatTemplate> {
        let syntax_error = |e: &minijinja::Error| TemplateError::Syntax(name.into(), describe(e));
        let mut env = Environment::new();
        // Hugging Face renders with trim_blocks and lstrip_blocks on.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| syntax_error(&e))?;
        env.set_syntax(syntax);
        // A template is the model file's code: it must not run without limit (nested loops of
        // range(100000) ran past a minute, at start-up, where chat test-renders it).
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, _> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| syntax_error(&e))?;
        let mut t = ChatTemplate {
            name: name.into(),
            kind: Kind::Jinja {
                env: Box::new(env),
                supports_system: true,
            },
            bos: bos.into(),
            eos: eos.into(),
        };
        // A template supports system messages when it renders one and keeps its text.
        let probe = "\u{1}system-probe\u{1}";
        let supported = t
            .render_jinja(
                &[
                    Message::new(Role::System, probe),
                    Message::new(Role::User, "hi"),
                ],
                true,
            )
            .is_ok_and(|s| s.contains(probe));
        if let Kind::Jinja {
            supports_system, ..
        } = &mut t.kind
        {
            *supports_system = supported;
        }
        Ok(t)
    }

    pub fn is_builtin(&self) -> bool {
        matches!(self.kind, Kind::Gemma)
    }

    pub fn bos(&self) -> &str {
        &self.bos
    }

    /// The text of `messages` (optionally a system message first, then alternating user and
    /// assistant turns), ending with the start of the model's turn if `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match &self.kind {
            Kind::Gemma => Ok(self.render_gemma(messages, add_generation_prompt)),
            Kind::Jinja {
                supports_system: true,
                ..
            } => self.render_jinja(messages, add_generation_prompt),
            Kind::Jinja { .. } => self.render_jinja(&fold_system(messages), add_generation_prompt),
        }
    }

    fn render_gemma(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        let mut out = self.bos.clone();
        for m in fold_system(messages) {
            let role = match m.role {
                Role::Assistant => "model",
                r => r.as_str(),
            };
            out.push_str("<start_of_turn>");
            out.push_str(role);
            out.push('\n');
            out.push_str(m.content.trim());
            out.push_str("<end_of_turn>\n");
        }
        if add_generation_prompt {
            out.push_str("<start_of_turn>model\n");
        }
        out
    }

    fn render_jinja(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let Kind::Jinja { env, .. } = &self.kind else {
            unreachable!("render_jinja on a Jinja template only")
        };
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut o = BTreeMap::new();
                o.insert("role", Value::from(m.role.as_str()));
                o.insert("content", Value::from(m.content.as_str()));
                Value::from(o)
            })
            .collect();
        let mut ctx = BTreeMap::new();
        ctx.insert("messages", Value::from(msgs));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        ctx.insert("bos_token", Value::from(self.bos.as_str()));
        ctx.insert("eos_token", Value::from(self.eos.as_str()));
        let tmpl = env
            .get_template("chat")
            .map_err(|e| TemplateError::Syntax(self.name.clone(), describe(&e)))?;
        let mut out = Capped(Vec::new());
        tmpl.render_captured_to(Value::from(ctx), &mut out)
            .map_err(|e| match e.kind() {
                ErrorKind::OutOfFuel => TemplateError::Runaway(
                    self.name.clone(),
                    format!("more than {TEMPLATE_FUEL} instructions"),
                ),
                ErrorKind::WriteFailure => TemplateError::Runaway(
                    self.name.clone(),
                    format!("more than {TEMPLATE_OUTPUT} bytes of text"),
                ),
                _ => TemplateError::Render(self.name.clone(), describe(&e)),
            })?;
        String::from_utf8(out.0)
            .map_err(|e| TemplateError::Render(self.name.clone(), e.to_string()))
    }
}

/// A system message becomes the head of the first user turn, separated by a blank line.
fn fold_system(messages: &[Message]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    let mut pending: Option<&str> = None;
    for m in messages {
        match m.role {
            Role::System => pending = Some(&m.content),
            Role::User if pending.is_some() => {
                let sys = pending.take().unwrap_or_default();
                out.push(Message::new(Role::User, format!("{sys}\n\n{}", m.content)));
            }
            _ => out.push(m.clone()),
        }
    }
    out
}

/// minijinja's message with its cause chain (the raise_exception text is in the cause).
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convo() -> Vec<Message> {
        vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, " Hello \n"),
            Message::new(Role::Assistant, "Hi there."),
            Message::new(Role::User, "Bye"),
        ]
    }

    #[test]
    fn gemma_turn_format() {
        let t = ChatTemplate::gemma("<bos>", "<eos>");
        assert_eq!(
            t.render(&convo(), true).unwrap(),
            "<bos><start_of_turn>user\nBe brief.\n\n Hello<end_of_turn>\n\
             <start_of_turn>model\nHi there.<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            t.render(&convo()[1..2], false).unwrap(),
            "<bos><start_of_turn>user\nHello<end_of_turn>\n"
        );
    }

    #[test]
    fn jinja_features_and_errors() {
        let src = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}\
                   {{ raise_exception('System role not supported') }}{% endif %}\
                   [{{ m.role }}:{{ m.content.strip() }}]{% endfor %}\
                   {% if add_generation_prompt %}>{% endif %}";
        let t = ChatTemplate::jinja(src, "<s>", "</s>").unwrap();
        // The template raises for a system message, so the system prompt is folded.
        assert_eq!(
            t.render(&convo(), true).unwrap(),
            "<s>[user:Be brief.\n\n Hello][assistant:Hi there.][user:Bye]>"
        );
        let bad = ChatTemplate::jinja("{% for %}", "", "").err().unwrap();
        assert!(
            bad.to_string()
                .contains("the chat template is not a valid template"),
            "{bad}"
        );
        let raising =
            ChatTemplate::jinja("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = raising
            .render(&convo()[1..2], true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("roles must alternate"), "{e}");
    }
}
