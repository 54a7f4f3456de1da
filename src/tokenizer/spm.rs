//! llama.cpp's SentencePiece tokenizer (`llm_tokenizer_spm_session`) as a `tokenizers` model.
//!
//! Symbols start as single characters; the adjacent pair whose concatenation is a token with
//! the highest score is merged (ties: the leftmost), until no pair forms a token. A final symbol
//! that is not a token is emitted as byte tokens (`<0xNN>`). Scores replace BPE merge ranks,
//! so nothing has to be derived at load: building the model is a hash table over the
//! vocabulary, and any SentencePiece vocabulary works, also ones whose tokens contain
//! characters that are not tokens themselves.
//!
//! Gemma 4's vocabulary (`tokenizer.ggml.model = "gemma4"`) is BPE over the same SentencePiece
//! text (llama.cpp's `llm_tokenizer_bpe_session` with the gemma4 pre-tokenizer): the same merge
//! loop, but the pair merged first is the one of lowest merge rank, the text is split into runs
//! of newlines and of everything else first, and a run of newlines that is itself a token is
//! taken whole (llama.cpp's fix, its PR 21343). [`SpmModel::with_merges`] switches to it.

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
    /// BPE merge ranks by the ids of the two halves (Gemma 4); `None`: SentencePiece scores.
    ranks: Option<HashMap<(u32, u32), u32>>,
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
            ranks: None,
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

    /// BPE with these merges ("left right", the first space after the first byte splits them,
    /// as llama.cpp reads them), ranked by their order. Merges whose halves are not tokens can
    /// never apply and are left out; returns how many were kept.
    pub fn with_merges<'a>(&mut self, merges: impl IntoIterator<Item = &'a str>) -> usize {
        let mut ranks = HashMap::new();
        for (rank, m) in merges.into_iter().enumerate() {
            let split = m.char_indices().skip(1).find(|&(_, c)| c == ' ');
            let Some((at, _)) = split else { continue };
            let (a, b) = (&m[..at], &m[at + 1..]);
            if let (Some(ia), Some(ib)) = (self.lookup(a.as_bytes()), self.lookup(b.as_bytes())) {
                ranks.entry((ia, ib)).or_insert(rank as u32);
            }
        }
        let n = ranks.len();
        self.ranks = Some(ranks);
        n
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
            // SentencePiece: the pair whose text is the best-scored token; BPE: the pair of
            // lowest rank (ranks stay below 2^24, exact as f32).
            let score = match &self.ranks {
                None => self.lookup(text).map(|id| self.scores[id as usize]),
                Some(ranks) => {
                    let half = |s: Symbol| self.lookup(&bytes[s.start..s.start + s.len]);
                    half(ls)
                        .zip(half(rs))
                        .and_then(|pair| ranks.get(&pair))
                        .map(|&rank| -(rank as f32))
                }
            };
            if let Some(score) = score {
                queue.push(Bigram {
                    score,
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

impl SpmModel {
    /// Gemma 4's BPE: runs of newlines and runs of the rest, each merged on its own; a newline
    /// run that is a token is that token.
    fn encode_bpe(&self, s: &str) -> Vec<(u32, usize, usize)> {
        let mut out = Vec::new();
        let bytes = s.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let newline = bytes[start] == b'\n';
            let len = bytes[start..]
                .iter()
                .position(|&b| (b == b'\n') != newline)
                .unwrap_or(bytes.len() - start);
            let run = &s[start..start + len];
            match self.lookup(run.as_bytes()).filter(|_| newline) {
                Some(id) => out.push((id, start, start + len)),
                None => out.extend(
                    self.encode(run)
                        .into_iter()
                        .map(|(id, a, b)| (id, a + start, b + start)),
                ),
            }
            start += len;
        }
        out
    }
}

impl Model for SpmModel {
    type Trainer = WordLevelTrainer;

    fn tokenize(&self, sequence: &str) -> HfResult<Vec<Token>> {
        let ids = match self.ranks {
            None => self.encode(sequence),
            Some(_) => self.encode_bpe(sequence),
        };
        Ok(ids
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

    fn bpe_ids(m: &SpmModel, s: &str) -> Vec<u32> {
        m.encode_bpe(s).into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn bpe_merges_by_rank_and_takes_newline_runs_whole() {
        // ids:        0       1    2    3    4     5     6       7
        let tokens = ["<unk>", "a", "b", "c", "ab", "bc", "\n", "\n\n\n"];
        // Scores would merge "ab" first; the ranks say "b c".
        let scores = [0.0, -1.0, -1.0, -1.0, -0.1, -5.0, -1.0, -1.0];
        let mut m = SpmModel::new(&tokens, &scores, Some(0));
        assert_eq!(ids(&m, "abc"), vec![4, 3]);
        // "x y" with a half that is not a token can never apply: left out.
        assert_eq!(m.with_merges(["b c", "a b", "x y"]), 2);
        assert_eq!(bpe_ids(&m, "abc"), vec![1, 5]);
        // A newline run that is a token is taken whole though no merge makes it (llama.cpp's
        // fix); one that is not is split as any text, and runs never merge across.
        assert_eq!(bpe_ids(&m, "a\n\n\nb"), vec![1, 7, 2]);
        assert_eq!(bpe_ids(&m, "\n\n"), vec![6, 6]);
    }
}
