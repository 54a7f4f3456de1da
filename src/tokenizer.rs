//! The tokenizer, built from a GGUF's `tokenizer.ggml.*` vocabulary with the `tokenizers` crate,
//! giving llama.cpp's ids token for token (SentencePiece-style BPE with byte fallback, as in
//! Gemma 1/2/3).
//!
//! The `tokenizers` pipeline does what llama.cpp does around its SentencePiece algorithm:
//! - added tokens are split out of the raw text first: control and unknown tokens and the
//!   end-of-generation texts llama.cpp recognises as special tokens (only with special parsing),
//!   user-defined tokens (runs of spaces, newlines, tags) always;
//! - the normalizer turns spaces into "▁" (and prepends one with `add_space_prefix`);
//! - the model is [`spm::SpmModel`], llama.cpp's merge-by-score algorithm with byte fallback.
//!   (A BPE with merges derived from the scores gives the same ids on Gemma's vocabulary, but
//!   needs 513k merge strings and about 0.5 s to build, and fails on vocabularies whose tokens
//!   contain characters that are not tokens, like the tiny test models'.)
//!
//! Decoding reads token text from a compact piece table (token bytes with "▁" as a space and
//! byte tokens as their byte), which the streaming decoder shares.

use crate::gguf::{Gguf, GgufError};
mod spm;

use spm::SpmModel;
use std::sync::Mutex;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, NormalizedString, Normalizer, TokenizerImpl};

type HfTokenizer = TokenizerImpl<
    SpmModel,
    SpmNormalizer,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Texts are tokenized in pieces of about this many bytes, so that memory follows the piece,
/// not the text (the pipeline takes ~100 bytes per byte of text).
pub const CHUNK_BYTES: usize = 1 << 16;

/// How many places past a piece's end are tried for a split before the piece grows by another
/// [`CHUNK_BYTES`] (text made of long tokens, such as runs of spaces, may have none).
const SPLIT_TRIES: usize = 64;

pub type TokenId = u32;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_id(id: i64) -> Option<TokenType> {
        Some(match id {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }
}

/// Texts llama.cpp treats as end of generation (and as control tokens) whatever their stored
/// type (`src/llama-vocab.cpp`, special_eog_ids).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("tokenizer model '{0}' is not supported (gemlet reads SentencePiece vocabularies, model 'llama', and Gemma 4's BPE, 'gemma4')")]
    Model(String),
    #[error("tokenizer vocabulary: {0}")]
    Vocab(String),
    #[error("tokenizer: {0}")]
    Build(String),
    #[error("token id {id} is outside the vocabulary of {size}")]
    BadId { id: TokenId, size: usize },
}

pub type Result<T> = std::result::Result<T, TokenizerError>;

/// Token text as bytes, for decoding: one blob and offsets (no per-token allocation).
struct Pieces {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
}

impl Pieces {
    fn get(&self, id: TokenId) -> &[u8] {
        let i = id as usize;
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

/// A vocabulary's tokenizer and its special tokens.
pub struct Tokenizer {
    hf: Mutex<HfTokenizer>,
    pieces: Pieces,
    types: Vec<TokenType>,
    bos: Option<TokenId>,
    eos: Option<TokenId>,
    eog: Vec<TokenId>,
    add_bos: bool,
    add_eos: bool,
    /// The longest token's bytes: text of n bytes takes at least n / this many tokens.
    max_piece: usize,
}

/// Reads an integer array key as i64s.
fn int_array(g: &Gguf, key: &str) -> Result<Vec<i64>> {
    g.get_array(key)?.i64s().ok_or_else(|| {
        TokenizerError::Gguf(GgufError::KeyType {
            key: key.into(),
            expected: "an array of integers",
            found: "another array".into(),
        })
    })
}

fn opt_id(g: &Gguf, key: &str, n_vocab: usize) -> Result<Option<TokenId>> {
    match g.opt(key, Gguf::get_u32)? {
        Some(id) if (id as usize) < n_vocab => Ok(Some(id)),
        Some(id) => Err(TokenizerError::Vocab(format!(
            "{key} = {id} is outside the vocabulary of {n_vocab}"
        ))),
        None => Ok(None),
    }
}

/// The byte a `<0xNN>` token stands for.
fn byte_of(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Builds the tokenizer from the GGUF's `tokenizer.ggml.*` keys.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        let model = g.get_str("tokenizer.ggml.model")?;
        // Gemma 4's BPE runs on SentencePiece-style text: the same pipeline, merge ranks for
        // scores.
        let bpe = match model.as_ref() {
            "llama" => false,
            "gemma4" => true,
            _ => return Err(TokenizerError::Model(model.into_owned())),
        };
        let tokens = g.get_array("tokenizer.ggml.tokens")?;
        let tokens = tokens.strings().ok_or_else(|| {
            TokenizerError::Vocab("tokenizer.ggml.tokens is not an array of strings".into())
        })?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize / 2 {
            return Err(TokenizerError::Vocab(format!("{n} tokens")));
        }
        let scores = g
            .get_array("tokenizer.ggml.scores")?
            .f32s()
            .ok_or_else(|| {
                TokenizerError::Vocab("tokenizer.ggml.scores is not an array of numbers".into())
            })?;
        let types: Vec<TokenType> = int_array(g, "tokenizer.ggml.token_type")?
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                TokenType::from_id(t)
                    .ok_or_else(|| TokenizerError::Vocab(format!("token {i} has unknown type {t}")))
            })
            .collect::<Result<_>>()?;
        if scores.len() != n || types.len() != n {
            return Err(TokenizerError::Vocab(format!(
                "{n} tokens but {} scores and {} types",
                scores.len(),
                types.len()
            )));
        }
        let flag = |key: &str, default: bool| -> Result<bool> {
            Ok(g.opt(key, Gguf::get_bool)?.unwrap_or(default))
        };
        // llama.cpp: Gemma 4 always starts with BOS, and BPE never adds a space prefix.
        let add_bos = bpe || flag("tokenizer.ggml.add_bos_token", true)?;
        let add_eos = flag("tokenizer.ggml.add_eos_token", false)?;
        let add_space_prefix = !bpe && flag("tokenizer.ggml.add_space_prefix", true)?;
        let bos = opt_id(g, "tokenizer.ggml.bos_token_id", n)?;
        let eos = opt_id(g, "tokenizer.ggml.eos_token_id", n)?;
        let unk = opt_id(g, "tokenizer.ggml.unknown_token_id", n)?;
        let eot = opt_id(g, "tokenizer.ggml.eot_token_id", n)?;

        let mut eog: Vec<TokenId> = eos.into_iter().chain(eot).collect();
        for (i, t) in tokens.iter().enumerate() {
            // Cheap filter first: every EOG text starts with one of these characters.
            if t.starts_with(['<', '[', '_'])
                && EOG_TEXTS.contains(&t.as_ref())
                && !eog.contains(&(i as u32))
            {
                eog.push(i as u32);
            }
        }

        let merges = if bpe {
            let m = g.get_array("tokenizer.ggml.merges")?;
            Some(m.strings().ok_or_else(|| {
                TokenizerError::Vocab("tokenizer.ggml.merges is not an array of strings".into())
            })?)
        } else {
            None
        };
        let hf = build_hf(
            &tokens,
            &scores,
            &types,
            &eog,
            unk,
            add_space_prefix,
            merges.as_deref(),
        )?;
        let pieces = build_pieces(&tokens, &types);
        let mut t = Tokenizer {
            hf: Mutex::new(hf),
            pieces,
            types,
            bos,
            eos,
            eog,
            add_bos,
            add_eos,
            max_piece: 1,
        };
        t.max_piece = (0..t.n_vocab() as TokenId)
            .filter_map(|id| t.piece(id).ok().map(<[u8]>::len))
            .max()
            .unwrap_or(1)
            .max(1);
        Ok(t)
    }

    /// The fewest tokens `text` can take (its bytes over the longest token's): known without
    /// tokenizing it, which costs memory many times the text's size.
    pub fn min_tokens(&self, text: &str) -> usize {
        text.len() / self.max_piece
    }

    pub fn n_vocab(&self) -> usize {
        self.types.len()
    }

    /// Whether a text starts with BOS (`tokenizer.ggml.add_bos_token`).
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// The end-of-generation tokens.
    pub fn eog(&self) -> &[TokenId] {
        &self.eog
    }

    pub fn bos(&self) -> Option<TokenId> {
        self.bos
    }

    pub fn eos(&self) -> Option<TokenId> {
        self.eos
    }

    /// Whether generation ends at `id` (end of sequence, end of turn, ...).
    pub fn is_eog(&self, id: TokenId) -> bool {
        self.eog.contains(&id)
    }

    /// Whether `id` is a control token (never printed in chat output).
    pub fn is_control(&self, id: TokenId) -> bool {
        matches!(
            self.types.get(id as usize),
            Some(TokenType::Control | TokenType::Unknown)
        ) || self.is_eog(id)
    }

    /// Token ids of `text`. With `add_special`, BOS (and EOS) as the vocabulary asks; with
    /// `parse_special`, control-token texts such as `<start_of_turn>` become those tokens,
    /// otherwise they are tokenized as plain text (llama-tokenize's `--no-parse-special`).
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<TokenId>> {
        self.encode_in_chunks(text, add_special, parse_special, CHUNK_BYTES)
    }

    /// [`Tokenizer::encode`] in pieces of about `chunk` bytes. The ids do not depend on
    /// `chunk`: a piece ends only where no token's text (nor an added token's) spans the split,
    /// so no merge and no added-token match could have crossed it.
    pub fn encode_in_chunks(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        chunk: usize,
    ) -> Result<Vec<TokenId>> {
        let mut hf = self.hf.lock().unwrap_or_else(|e| e.into_inner());
        hf.set_encode_special_tokens(!parse_special);
        let mut ids = Vec::new();
        if add_special && self.add_bos {
            ids.extend(self.bos);
        }
        let space_prefix = hf.get_normalizer().is_some_and(|n| n.space_prefix);
        let mut start = 0;
        while start < text.len() {
            let end = split_after(&hf, text, start, chunk.max(1), space_prefix);
            hf.with_normalizer(Some(SpmNormalizer {
                space_prefix,
                mid_text: start > 0,
            }));
            let enc = hf
                .encode_fast(&text[start..end], false)
                .map_err(|e| TokenizerError::Build(e.to_string()))?;
            ids.extend_from_slice(enc.get_ids());
            start = end;
        }
        if add_special && self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// The bytes token `id` stands for (a byte token's byte; "▁" as a space).
    pub fn piece(&self, id: TokenId) -> Result<&[u8]> {
        if id as usize >= self.n_vocab() {
            return Err(TokenizerError::BadId {
                id,
                size: self.n_vocab(),
            });
        }
        Ok(self.pieces.get(id))
    }

    /// Text of `ids`, control tokens included as their text (llama.cpp's detokenize with
    /// special tokens rendered). Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[TokenId]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.piece(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A decoder that turns ids, one at a time, into text that is complete UTF-8.
    pub fn stream(&self, skip_control: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            pending: Vec::new(),
            skip_control,
        }
    }
}

/// Where the piece of `text` from `start` ends: the first safe split at least `chunk` bytes on,
/// or the text's end.
fn split_after(
    hf: &HfTokenizer,
    text: &str,
    start: usize,
    chunk: usize,
    space_prefix: bool,
) -> usize {
    let model = hf.get_model();
    let mut from = start.saturating_add(chunk);
    while from < text.len() {
        let candidates = (from..text.len())
            .filter(|&p| text.is_char_boundary(p))
            .take(SPLIT_TRIES);
        for p in candidates {
            let after_added = space_prefix && ends_in_added_token(hf, &text[..p]);
            if !after_added && no_token_spans(model, text, p, space_prefix) {
                return p;
            }
        }
        from = from.saturating_add(chunk);
    }
    text.len()
}

/// Whether `text` may end with an added token (control or user-defined), after which the
/// normalizer puts a "▁": a piece must not start there, as its start gets none. Asked of the
/// pipeline's own added vocabulary, not of the token table: a text stored twice (as a normal and
/// as a user-defined token) is matched as the added one.
fn ends_in_added_token(hf: &HfTokenizer, text: &str) -> bool {
    let longest = hf.get_model().max_token_len().max(1);
    let added = hf.get_added_vocabulary().get_vocab();
    (text.len().saturating_sub(longest)..text.len())
        .filter(|&a| text.is_char_boundary(a))
        .any(|a| added.contains_key(&text[a..]))
}

/// Whether no token's text, as typed or with spaces as "▁", spans byte `p` of `text`. With
/// `space_prefix`, a "▁" may stand before any stretch (the normalizer adds one after each added
/// token, which are not known here), so windows are also tried with one in front.
fn no_token_spans(model: &SpmModel, text: &str, p: usize, space_prefix: bool) -> bool {
    const PREFIX: &[u8] = "▁".as_bytes();
    let bytes = text.as_bytes();
    // A token spanning p as typed is at most as long as its stored text.
    let longest = model.max_token_len().max(1);
    let mut normal = Vec::with_capacity(3 * longest + PREFIX.len());
    for a in p.saturating_sub(longest - 1)..p {
        if !text.is_char_boundary(a) {
            continue;
        }
        let last = (a + longest).min(text.len());
        for b in p + 1..=last {
            if !text.is_char_boundary(b) {
                continue;
            }
            let raw = &bytes[a..b];
            normal.clear();
            normal.extend_from_slice(PREFIX);
            for &c in raw {
                match c {
                    b' ' => normal.extend_from_slice(PREFIX),
                    c => normal.push(c),
                }
            }
            if model.is_token(raw)
                || model.is_token(&normal[PREFIX.len()..])
                || (space_prefix && model.is_token(&normal))
            {
                return false;
            }
        }
    }
    true
}

fn build_pieces(tokens: &[std::borrow::Cow<'_, str>], types: &[TokenType]) -> Pieces {
    let mut bytes = Vec::with_capacity(tokens.iter().map(|t| t.len()).sum());
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    offsets.push(0u32);
    for (t, ty) in tokens.iter().zip(types) {
        match (ty, byte_of(t)) {
            (TokenType::Byte, Some(b)) => bytes.push(b),
            _ => bytes.extend_from_slice(t.replace('▁', " ").as_bytes()),
        }
        offsets.push(bytes.len() as u32);
    }
    Pieces { bytes, offsets }
}

fn build_hf(
    tokens: &[std::borrow::Cow<'_, str>],
    scores: &[f32],
    types: &[TokenType],
    eog: &[TokenId],
    unk: Option<TokenId>,
    add_space_prefix: bool,
    merges: Option<&[std::borrow::Cow<'_, str>]>,
) -> Result<HfTokenizer> {
    let mut model = SpmModel::new(tokens, scores, unk);
    if let Some(merges) = merges {
        model.with_merges(merges.iter().map(|m| m.as_ref()));
    }
    let mut added = Vec::new();
    for (i, (t, ty)) in tokens.iter().zip(types).enumerate() {
        let special =
            matches!(ty, TokenType::Control | TokenType::Unknown) || eog.contains(&(i as u32));
        if special {
            added.push(AddedToken::from(t.to_string(), true).normalized(false));
        } else if *ty == TokenType::UserDefined {
            // Added tokens are matched in the raw text, before spaces become "▁"; older files
            // store user-defined tokens with "▁" for spaces, so match the space form.
            let content = t.replace('▁', " ");
            if content != t.as_ref() {
                model.add_alias(&content, i as u32);
            }
            added.push(AddedToken::from(content, false).normalized(false));
        }
    }
    let mut hf = HfTokenizer::new(model);
    hf.with_normalizer(Some(SpmNormalizer {
        space_prefix: add_space_prefix,
        mid_text: false,
    }));
    hf.add_tokens(&added);
    Ok(hf)
}

/// Spaces become "▁"; with `add_space_prefix`, one is put before the text and after each
/// added token, as llama.cpp does (the pipeline normalizes each stretch between added tokens).
struct SpmNormalizer {
    space_prefix: bool,
    /// The text starts mid-text (a later piece of a chunked text): no prefix at its start.
    mid_text: bool,
}

impl Normalizer for SpmNormalizer {
    fn normalize(&self, n: &mut NormalizedString) -> tokenizers::Result<()> {
        let at_start = n.offsets_original().0 == 0;
        if self.space_prefix && !n.is_empty() && !(self.mid_text && at_start) {
            n.prepend("▁");
        }
        n.replace(' ', "▁")
    }
}

/// Turns ids into text as they are generated, emitting only complete UTF-8: the bytes of a
/// character split across byte tokens are held until the character is whole.
pub struct StreamDecoder<'t> {
    tokenizer: &'t Tokenizer,
    pending: Vec<u8>,
    skip_control: bool,
}

impl StreamDecoder<'_> {
    /// Adds `id`; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: TokenId) -> Result<String> {
        if self.skip_control && self.tokenizer.is_control(id) {
            return Ok(String::new());
        }
        self.pending.extend_from_slice(self.tokenizer.piece(id)?);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return Ok(out);
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"),
                    );
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return Ok(out);
                        }
                        // Bytes that can never become a character.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: whatever is left (an incomplete character) as U+FFFD.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}
