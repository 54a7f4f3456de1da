//! llama.cpp's SentencePiece tokenizer (`llm_tokenizer_spm_session`) as a `tokenizers` model.
//!
//! Symbols start as single characters; the adjacent pair whose concatenation is a token with
//! the highest score is merged (ties: the leftmost), until no pair forms a token. A final symbol
//! that is not a token is emitted as byte tokens (`<0xNN>`). Scores replace BPE merge ranks,
//! so nothing has to be derived at load: building the model is a hash table over the
//! vocabulary, and any SentencePiece vocabulary works, also ones whose tokens contain
//! characters that are not tokens themselves.

use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use tokenizers::models::wordlevel::WordLevelTrainer;
use tokenizers::{Model, Result as HfResult, Token};

/// The vocabulary as one text blob with offsets, and an open-addressing table from text to id
/// (no allocation per token).
pub struct SpmModel {
    text: Vec<u8>,
    offsets: Vec<u32>,
    scores: Vec<f32>,
    table: Vec<u32>,
    /// `<0xNN>` token of each byte (or the unknown token when the vocabulary lacks one).
    byte_tokens: [u32; 256],
    /// Other texts that name a token (user-defined tokens stored with "▁" for spaces).
    aliases: HashMap<String, u32>,
    max_len: usize,
}

const EMPTY: u32 = u32::MAX;

fn hash(s: &[u8]) -> u64 {
    // FNV-1a: short keys, and the table is ours alone.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl SpmModel {
    pub fn new(tokens: &[impl AsRef<str>], scores: &[f32], unk: Option<u32>) -> SpmModel {
        let mut text = Vec::with_capacity(tokens.iter().map(|t| t.as_ref().len()).sum());
        let mut offsets = Vec::with_capacity(tokens.len() + 1);
        offsets.push(0u32);
        for t in tokens {
            text.extend_from_slice(t.as_ref().as_bytes());
            offsets.push(text.len() as u32);
        }
        let mut model = SpmModel {
            text,
            offsets,
            scores: scores.to_vec(),
            table: vec![EMPTY; (tokens.len() * 2).next_power_of_two()],
            byte_tokens: [unk.unwrap_or(0); 256],
            aliases: HashMap::new(),
            max_len: tokens.iter().map(|t| t.as_ref().len()).max().unwrap_or(0),
        };
        let mask = model.table.len() - 1;
        for id in 0..tokens.len() as u32 {
            let mut slot = hash(model.token_bytes(id)) as usize & mask;
            loop {
                let cur = model.table[slot];
                if cur == EMPTY {
                    model.table[slot] = id;
                    break;
                }
                // The first of duplicate texts keeps the text, as llama.cpp's map does.
                if model.token_bytes(cur) == model.token_bytes(id) {
                    break;
                }
                slot = (slot + 1) & mask;
            }
        }
        for b in 0..=255u8 {
            if let Some(id) = model.lookup(format!("<0x{b:02X}>").as_bytes()) {
                model.byte_tokens[b as usize] = id;
            }
        }
        model
    }

    /// Makes `text` another name of token `id` (for added-token lookup only).
    pub fn add_alias(&mut self, text: &str, id: u32) {
        self.aliases.insert(text.to_string(), id);
    }

    fn token_bytes(&self, id: u32) -> &[u8] {
        &self.text[self.offsets[id as usize] as usize..self.offsets[id as usize + 1] as usize]
    }

    /// Whether `s` is a token's text.
    pub fn is_token(&self, s: &[u8]) -> bool {
        self.lookup(s).is_some()
    }

    /// The longest token text's bytes.
    pub fn max_token_len(&self) -> usize {
        self.max_len
    }

    fn lookup(&self, s: &[u8]) -> Option<u32> {
        let mask = self.table.len() - 1;
        let mut slot = hash(s) as usize & mask;
        loop {
            let id = self.table[slot];
            if id == EMPTY {
                return None;
            }
            if self.token_bytes(id) == s {
                return Some(id);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn n_tokens(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Token ids of `s` (already normalized: spaces are "▁"), with byte ranges.
    pub fn encode(&self, s: &str) -> Vec<(u32, usize, usize)> {
        #[derive(Clone, Copy)]
        struct Symbol {
            start: usize,
            len: usize,
            prev: isize,
            next: isize,
        }
        #[derive(PartialEq)]
        struct Bigram {
            score: f32,
            left: usize,
            right: usize,
            size: usize,
        }
        impl Eq for Bigram {}
        impl Ord for Bigram {
            // Max-heap: higher score first, then the leftmost pair.
            fn cmp(&self, o: &Self) -> std::cmp::Ordering {
                self.score
                    .total_cmp(&o.score)
                    .then_with(|| o.left.cmp(&self.left))
            }
        }
        impl PartialOrd for Bigram {
            fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(o))
            }
        }

        let bytes = s.as_bytes();
        let mut symbols: Vec<Symbol> = Vec::with_capacity(s.len());
        for (i, (start, ch)) in s.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: ch.len_utf8(),
                prev: i as isize - 1,
                next: i as isize + 1,
            });
        }
        if let Some(last) = symbols.last_mut() {
            last.next = -1;
        }
        let mut queue = BinaryHeap::new();
        let try_add = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], l: isize, r: isize| {
            if l < 0 || r < 0 {
                return;
            }
            let (ls, rs) = (symbols[l as usize], symbols[r as usize]);
            let text = &bytes[ls.start..rs.start + rs.len];
            if let Some(id) = self.lookup(text) {
                queue.push(Bigram {
                    score: self.scores[id as usize],
                    left: l as usize,
                    right: r as usize,
                    size: text.len(),
                });
            }
        };
        for i in 1..symbols.len() {
            try_add(&mut queue, &symbols, i as isize - 1, i as isize);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Stale: one side was merged since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if r.next >= 0 {
                symbols[r.next as usize].prev = b.left as isize;
            }
            let left = symbols[b.left];
            try_add(&mut queue, &symbols, left.prev, b.left as isize);
            try_add(&mut queue, &symbols, b.left as isize, left.next);
        }

        let mut out = Vec::new();
        let mut i: isize = if symbols.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let sym = symbols[i as usize];
            let text = &bytes[sym.start..sym.start + sym.len];
            match self.lookup(text) {
                Some(id) => out.push((id, sym.start, sym.start + sym.len)),
                // Not a token: its bytes (each byte token spans the whole symbol, so offsets
                // stay on character boundaries).
                None => out.extend(
                    text.iter()
                        .map(|&b| (self.byte_tokens[b as usize], sym.start, sym.start + sym.len)),
                ),
            }
            i = sym.next;
        }
        out
    }
}

impl Model for SpmModel {
    type Trainer = WordLevelTrainer;

    fn tokenize(&self, sequence: &str) -> HfResult<Vec<Token>> {
        Ok(self
            .encode(sequence)
            .into_iter()
            // No text per token: only ids are read from the encoding, and a String each
            // would cost an allocation per token.
            .map(|(id, a, b)| Token::new(id, String::new(), (a, b)))
            .collect())
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.lookup(token.as_bytes())
            .or_else(|| self.aliases.get(token).copied())
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        ((id as usize) < self.n_tokens())
            .then(|| String::from_utf8_lossy(self.token_bytes(id)).into_owned())
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        (0..self.n_tokens() as u32)
            .map(|id| {
                (
                    String::from_utf8_lossy(self.token_bytes(id)).into_owned(),
                    id,
                )
            })
            .collect()
    }

    fn get_vocab_size(&self) -> usize {
        self.n_tokens()
    }

    fn save(&self, _folder: &Path, _prefix: Option<&str>) -> HfResult<Vec<PathBuf>> {
        Err("gemlet's SentencePiece model is built from the GGUF and is not saved".into())
    }

    fn get_trainer(&self) -> WordLevelTrainer {
        WordLevelTrainer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> SpmModel {
        // ids:        0      1    2    3    4     5     6       7        8
        let tokens = ["<unk>", "▁", "a", "b", "ab", "▁a", "▁ab", "<0x54>", "▁T"];
        let scores = [0.0, -1.0, -2.0, -2.0, -1.5, -0.5, -0.1, 0.0, -3.0];
        SpmModel::new(&tokens, &scores, Some(0))
    }

    fn ids(m: &SpmModel, s: &str) -> Vec<u32> {
        m.encode(s).into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn merges_by_score_not_by_position() {
        let m = model();
        // "▁a" (-0.5) beats "ab" (-1.5), then "▁a"+"b" = "▁ab" (-0.1).
        assert_eq!(ids(&m, "▁ab"), vec![6]);
        assert_eq!(ids(&m, "ab"), vec![4]);
        assert_eq!(ids(&m, "ba"), vec![3, 2]);
    }

    #[test]
    fn characters_outside_the_vocabulary_still_merge_then_fall_back_to_bytes() {
        let m = model();
        // "T" is not a token, but "▁T" is (llama.cpp merges by text, not by symbol ids).
        assert_eq!(ids(&m, "▁T"), vec![8]);
        // A lone "T" becomes its byte token; bytes without one map to <unk>.
        assert_eq!(ids(&m, "T"), vec![7]);
        assert_eq!(ids(&m, "é"), vec![0, 0]);
        assert!(ids(&m, "").is_empty());
    }
}
