//! A conversation over a [`Session`], evaluating each turn's own tokens only.
//!
//! After a reply the KV cache ends with the reply's tokens (all but the last one sampled). The
//! next turn evaluates just what the template writes after that reply: the reply's last token,
//! the end of its turn, the new user turn and the start of the model's. That text is found by
//! rendering the conversation with a marker in place of the last reply and taking what follows
//! the marker, so a template that rewrites replies (trims them, say) never forces the cache to
//! be rebuilt; llama.cpp's chat does the same (`common_chat_format_single`).
//!
//! When the conversation changes in other ways (the first turn, /clear, a new system prompt,
//! dropped turns), the whole conversation is rendered and compared with the text of the
//! session's tokens: the tokens inside the common prefix stay, and only the rest is tokenized
//! and evaluated.

use super::template::{ChatTemplate, Message, Role, TemplateError};
use crate::sampling::Sampler;
use crate::session::{Session, SessionError, Stop};
use crate::tokenizer::{TokenId, TokenizerError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the chat template renders this conversation as no tokens at all")]
    EmptyPrompt,
    #[error("the message ({bytes} bytes) is at least {at_least} tokens, and the context holds {n_ctx} (raise -c)")]
    TooLong {
        bytes: usize,
        at_least: usize,
        n_ctx: usize,
    },
    #[error(
        "the conversation needs {needed} tokens but the context holds {n_ctx}: {}",
        if *.shift { "the message alone is too long (raise -c)" }
        else { "start over with /clear, raise -c, or run with --context-shift" }
    )]
    ContextFull {
        needed: usize,
        n_ctx: usize,
        shift: bool,
    },
}

pub type Result<T> = std::result::Result<T, ChatError>;

/// The cache tokens to keep, the tokens to evaluate after them, and the exchanges dropped to
/// make them fit.
struct Prompt {
    keep: usize,
    tokens: Vec<TokenId>,
    dropped: usize,
}

/// What happens when a new turn does not fit in the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the oldest exchanges (the system prompt stays) until the conversation fits in
    /// three quarters of the context, then re-evaluate it.
    DropOldest,
    /// Refuse the turn with [`ChatError::ContextFull`].
    Stop,
}

/// Figures of one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnStats {
    /// Tokens evaluated for the prompt of this turn (the template's text around the new
    /// message, plus whatever of the cache could not be reused).
    pub prompt_tokens: usize,
    /// Tokens of the rendered conversation that were already in the cache.
    pub reused_tokens: usize,
    pub prompt_ms: f64,
    /// From the call to the first generated token.
    pub first_token_ms: f64,
    pub generated_tokens: usize,
    pub generate_ms: f64,
    /// Positions used after the turn, and the context size.
    pub n_past: usize,
    pub n_ctx: usize,
    /// Exchanges dropped to make room.
    pub dropped_turns: usize,
    pub stop: Stop,
}

impl TurnStats {
    /// Generation speed (tokens evaluated after the first one, per second).
    pub fn generate_tps(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / (self.generate_ms / 1e3)
    }

    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / (self.prompt_ms / 1e3)
    }
}

pub struct Chat<'m> {
    session: Session<'m>,
    template: ChatTemplate,
    system: Option<String>,
    /// User and assistant turns, alternating, user first.
    turns: Vec<Message>,
    overflow: Overflow,
    cache_end: CacheEnd,
}

/// What the session's cache ends with, which decides how the next turn is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheEnd {
    /// Not the last reply (no turn yet, /clear, a new system prompt, an interrupted prompt):
    /// the next turn compares the whole rendered conversation with the cache.
    Other,
    /// The last reply, whose last sampled token is not evaluated yet.
    ReplyBefore(TokenId),
    /// The last reply, which ended at an end-of-generation token (not evaluated).
    ReplyEnded,
}

impl<'m> Chat<'m> {
    pub fn new(session: Session<'m>, template: ChatTemplate, overflow: Overflow) -> Chat<'m> {
        Chat {
            session,
            template,
            system: None,
            turns: Vec::new(),
            overflow,
            cache_end: CacheEnd::Other,
        }
    }

    pub fn session(&self) -> &Session<'m> {
        &self.session
    }

    /// The conversation, system prompt first.
    pub fn messages(&self) -> Vec<Message> {
        let sys = self.system.iter().map(|s| Message::new(Role::System, s));
        sys.chain(self.turns.iter().cloned()).collect()
    }

    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// Sets the system prompt (empty: none). The next turn re-evaluates from where the
    /// rendered text changes.
    pub fn set_system(&mut self, system: &str) {
        let s = system.trim();
        self.system = (!s.is_empty()).then(|| s.to_string());
        self.cache_end = CacheEnd::Other;
    }

    /// Starts a new conversation (the system prompt stays). The cache is kept: the next turn
    /// reuses whatever prefix still matches (at least BOS and the system prompt).
    pub fn clear(&mut self) {
        self.turns.clear();
        self.cache_end = CacheEnd::Other;
    }

    /// Sends a user message and generates the reply, streaming its text to `on_text`.
    /// Setting `stop` ends the reply early; the partial reply stays in the conversation.
    pub fn send(
        &mut self,
        user: &str,
        sampler: &mut Sampler,
        n_predict: usize,
        stop: &AtomicBool,
        mut on_text: impl FnMut(&str),
    ) -> Result<TurnStats> {
        let t0 = Instant::now();
        // A message that cannot fit is refused before it is tokenized.
        let n_ctx = self.session.params().n_ctx;
        let at_least = self.session.model().tokenizer().min_tokens(user);
        if at_least >= n_ctx {
            return Err(ChatError::TooLong {
                bytes: user.len(),
                at_least,
                n_ctx,
            });
        }
        self.turns.push(Message::new(Role::User, user));
        let prompt = match self.next_prompt() {
            Ok(p) => p,
            Err(e) => {
                self.turns.pop();
                return Err(e);
            }
        };
        self.cache_end = CacheEnd::Other;
        self.session.truncate(prompt.keep);
        let mut reused = prompt.keep;
        if prompt.tokens.is_empty() && reused == 0 {
            self.turns.pop();
            return Err(ChatError::EmptyPrompt);
        }
        let evaluated = if prompt.tokens.is_empty() {
            // The whole prompt is cached but its logits are not: evaluate its last token again.
            reused -= 1;
            let last = self.session.tokens()[reused];
            self.session.truncate(reused);
            vec![last]
        } else {
            prompt.tokens
        };
        let n_prompt = evaluated.len();
        let evaluated_ok = self.session.eval_abortable(&evaluated, stop);
        let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut reply = String::new();
        let mut first_token_ms = 0.0;
        let mut t_gen = Instant::now();
        let generation = match evaluated_ok {
            Ok(()) => self.session.generate(sampler, n_predict, |text| {
                if first_token_ms == 0.0 {
                    first_token_ms = t0.elapsed().as_secs_f64() * 1e3;
                    t_gen = Instant::now();
                }
                reply.push_str(text);
                on_text(text);
                !stop.load(Ordering::Relaxed)
            }),
            Err(SessionError::Stopped) => Ok(crate::session::Generation {
                ids: Vec::new(),
                stop: Stop::Interrupted,
                top_logits: Vec::new(),
            }),
            Err(e) => Err(e),
        };
        let generate_ms = t_gen.elapsed().as_secs_f64() * 1e3;
        if let Ok(g) = &generation {
            // After an interrupted prompt the cache does not end with this turn.
            if !(g.stop == Stop::Interrupted && g.ids.is_empty()) {
                self.cache_end = match g.ids.last() {
                    Some(&id) => CacheEnd::ReplyBefore(id),
                    None => CacheEnd::ReplyEnded,
                };
            }
        }
        // The reply, even a partial or failed one, is part of the conversation, so turns keep
        // alternating.
        self.turns.push(Message::new(Role::Assistant, reply));
        let generation = generation?;
        Ok(TurnStats {
            prompt_tokens: n_prompt,
            reused_tokens: reused,
            prompt_ms,
            first_token_ms,
            generated_tokens: generation.ids.len(),
            generate_ms,
            n_past: self.session.n_past(),
            n_ctx: self.session.params().n_ctx,
            dropped_turns: prompt.dropped,
            stop: generation.stop,
        })
    }

    /// What to keep of the cache and what to evaluate after it for the conversation (whose
    /// last message is the new user message).
    fn next_prompt(&mut self) -> Result<Prompt> {
        let n_ctx = self.session.params().n_ctx;
        // After a reply, the reply's unevaluated last token comes first.
        let tail = match self.cache_end {
            CacheEnd::Other => None,
            CacheEnd::ReplyBefore(id) => Some(vec![id]),
            CacheEnd::ReplyEnded => Some(Vec::new()),
        };
        if let Some(mut tokens) = tail {
            if let Some(text) = self.after_last_reply()? {
                let tok = self.session.model().tokenizer();
                tokens.extend(tok.encode(&text, false, true)?);
                let keep = self.session.n_past();
                if keep + tokens.len() < n_ctx {
                    return Ok(Prompt {
                        keep,
                        tokens,
                        dropped: 0,
                    });
                }
            }
        }
        let mut dropped = 0;
        loop {
            let full = self.render(&self.messages())?;
            let (keep, end) = self.reusable(full.as_bytes());
            // The kept tokens' bytes are a prefix of `full`; where they end inside a character
            // (a byte-fallback token), the tokens of that character are not kept either.
            let (keep, end) = self.back_to_char_boundary(&full, keep, end);
            let rest = &full[end..];
            let tokens = self.session.model().tokenizer().encode(rest, false, true)?;
            let needed = keep + tokens.len();
            // Room for at least one generated token; after dropping turns, for a quarter of
            // the context, so the next turns do not drop again at once.
            let limit = if dropped > 0 {
                n_ctx * 3 / 4
            } else {
                n_ctx - 1
            };
            if needed <= limit || (needed < n_ctx && self.turns.len() == 1) {
                return Ok(Prompt {
                    keep,
                    tokens,
                    dropped,
                });
            }
            if self.overflow == Overflow::Stop || self.turns.len() == 1 {
                return Err(ChatError::ContextFull {
                    needed,
                    n_ctx,
                    shift: self.overflow == Overflow::DropOldest,
                });
            }
            // Drop the oldest exchange (user message and reply).
            self.turns.drain(..2);
            dropped += 1;
        }
    }

    /// The text the template writes after the last reply's content, through the generation
    /// prompt of the new turn; None if the template does not show the reply as written.
    fn after_last_reply(&self) -> Result<Option<String>> {
        const MARK: &str = "\u{F8FF}gemlet:reply\u{F8FF}";
        let mut messages = self.messages();
        let n = messages.len();
        if n < 2 || messages[n - 2].role != Role::Assistant {
            return Ok(None);
        }
        messages[n - 2].content = MARK.into();
        let text = self.render(&messages)?;
        Ok(text
            .find(MARK)
            .map(|at| text[at + MARK.len()..].to_string()))
    }

    /// The conversation's text, with BOS in front when the model wants it and the template
    /// does not write it.
    fn render(&self, messages: &[Message]) -> Result<String> {
        let mut text = self.template.render(messages, true)?;
        let bos = self.template.bos();
        if self.session.model().tokenizer().add_bos() && !bos.is_empty() && !text.starts_with(bos) {
            text.insert_str(0, bos);
        }
        Ok(text)
    }

    /// How many of the session's tokens lie wholly within the common prefix of `full` and
    /// their text (the bytes of each token's piece), and where in `full` they end.
    fn reusable(&self, full: &[u8]) -> (usize, usize) {
        let tok = self.session.model().tokenizer();
        let mut end = 0;
        for (i, &id) in self.session.tokens().iter().enumerate() {
            let piece = tok.piece(id).unwrap_or_default();
            if full.get(end..end + piece.len()) != Some(piece) {
                return (i, end);
            }
            end += piece.len();
        }
        (self.session.tokens().len(), end)
    }

    /// Drops kept tokens from the end until they end on a character boundary of `full`.
    fn back_to_char_boundary(&self, full: &str, mut keep: usize, mut end: usize) -> (usize, usize) {
        let tok = self.session.model().tokenizer();
        while !full.is_char_boundary(end) {
            keep -= 1;
            end -= tok
                .piece(self.session.tokens()[keep])
                .unwrap_or_default()
                .len();
        }
        (keep, end)
    }
}
