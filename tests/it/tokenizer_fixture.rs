//! llama.cpp's token ids for 3,632 strings on the real Gemma 3 vocabulary
//! (tests/fixtures/gemma3-tokenize.jsonl.gz, a copy of ../shared/fixtures/gemma3-tokenize.jsonl):
//! with special-token parsing (`ids`), without (`ids_no_special`), and the decoded text. Every
//! line must match exactly: a mismatch is a bug, not a tolerance.

use crate::common;

use gemlet::gguf::Gguf;
use gemlet::tokenizer::Tokenizer;
use serde_json::Value as Json;
use std::io::{BufRead, BufReader};

struct Case {
    kind: String,
    text: String,
    ids: Vec<u32>,
    ids_no_special: Vec<u32>,
    decoded: String,
}

fn cases() -> Vec<Case> {
    let f = std::fs::File::open(common::fixture("gemma3-tokenize.jsonl.gz")).unwrap();
    let ids = common::json_ids;
    BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .map(|l| {
            let v: Json = serde_json::from_str(&l.unwrap()).unwrap();
            Case {
                kind: v["kind"].as_str().unwrap().into(),
                text: v["text"].as_str().unwrap().into(),
                ids: ids(&v["ids"]),
                ids_no_special: ids(&v["ids_no_special"]),
                decoded: v["decoded"].as_str().unwrap().into(),
            }
        })
        .collect()
}

fn tokenizer() -> Tokenizer {
    let g = Gguf::open(common::real_model()).unwrap();
    Tokenizer::from_gguf(&g).unwrap()
}

#[test]
fn ids_and_decoding_match_llama_cpp_on_every_line() {
    let tok = tokenizer();
    let cases = cases();
    assert_eq!(cases.len(), 3632);
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let got = tok.encode(&c.text, true, true).unwrap();
        if got != c.ids {
            failures.push(format!(
                "line {i} ({}) parse_special: {:?}\n  got  {got:?}\n  want {:?}",
                c.kind, c.text, c.ids
            ));
        }
        let got = tok.encode(&c.text, true, false).unwrap();
        if got != c.ids_no_special {
            failures.push(format!(
                "line {i} ({}) no_special: {:?}\n  got  {got:?}\n  want {:?}",
                c.kind, c.text, c.ids_no_special
            ));
        }
        let text = tok.decode(&c.ids).unwrap();
        if text != c.decoded {
            failures.push(format!(
                "line {i} ({}) decode: got {text:?} want {:?}",
                c.kind, c.decoded
            ));
        }
    }
    let n = failures.len();
    failures.truncate(20);
    assert!(
        n == 0,
        "{n} mismatches of {} checks; first ones:\n{}",
        3 * cases.len(),
        failures.join("\n")
    );
}

#[test]
fn streaming_decoder_never_emits_a_partial_character() {
    // Each push returns a String, so whole characters by construction; a character emitted
    // early would show up as U+FFFD and break the equality with the full decode. The count of
    // held-back pieces shows the corpus does split characters across byte tokens.
    let tok = tokenizer();
    let mut held = 0;
    for c in cases() {
        let mut stream = tok.stream(false);
        let mut text = String::new();
        for &id in &c.ids {
            let piece = tok.piece(id).unwrap();
            let out = stream.push(id).unwrap();
            if std::str::from_utf8(piece).is_err() {
                held += 1;
            }
            text.push_str(&out);
        }
        text.push_str(&stream.finish());
        assert_eq!(text, c.decoded, "{:?}", c.text);
    }
    assert!(held > 100, "only {held} pieces were partial characters");
}

#[test]
fn tokenizing_in_pieces_gives_llama_cpp_s_ids() {
    // Every 10th line in pieces of 1 byte (a split at every place no token spans; each place
    // costs thousands of lookups, so not every line), and all lines as one text of ~700 KB in
    // the 64 KiB pieces `encode` uses, against the whole text at once.
    let tok = tokenizer();
    let cases = cases();
    for c in cases.iter().step_by(10) {
        assert_eq!(
            tok.encode_in_chunks(&c.text, true, true, 1).unwrap(),
            c.ids,
            "{:?}",
            c.text
        );
        assert_eq!(
            tok.encode_in_chunks(&c.text, true, false, 1).unwrap(),
            c.ids_no_special,
            "{:?}",
            c.text
        );
    }
    let all: String = cases
        .iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let whole = tok.encode_in_chunks(&all, true, true, usize::MAX).unwrap();
    assert_eq!(tok.encode(&all, true, true).unwrap(), whole);
    assert!(
        all.len() > 8 * gemlet::tokenizer::CHUNK_BYTES,
        "{} bytes",
        all.len()
    );
}

/// The real Gemma 3 vocabulary written as a Gemma 4 (`gemma4`, BPE) tokenizer, as
/// scripts/make_gemma4_vocab.py writes it: merges derived from the vocabulary as the
/// `tokenizers` library derives them from a SentencePiece model (every split of a normal piece
/// into two pieces, ranked by the piece's score, then its id and the halves' ids).
fn gemma4_vocab_file(dir: &std::path::Path) -> (std::path::PathBuf, usize) {
    use gemlet::gguf::{GgufWriter, Value};
    let g = Gguf::open(common::real_model()).unwrap();
    let tokens = g
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .strings()
        .unwrap();
    let scores = g
        .get_array("tokenizer.ggml.scores")
        .unwrap()
        .f32s()
        .unwrap();
    let types = g
        .get_array("tokenizer.ggml.token_type")
        .unwrap()
        .i64s()
        .unwrap();
    let ids: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_ref(), i))
        .collect();
    let mut merges = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if types[i] != 1 {
            continue;
        }
        for (k, _) in t.char_indices().skip(1) {
            let (a, b) = (&t[..k], &t[k..]);
            if let (Some(&ia), Some(&ib)) = (ids.get(a), ids.get(b)) {
                merges.push((-scores[i], i, ia, ib, a, b));
            }
        }
    }
    merges.sort_by(|x, y| {
        x.0.total_cmp(&y.0)
            .then(x.1.cmp(&y.1))
            .then(x.2.cmp(&y.2))
            .then(x.3.cmp(&y.3))
    });
    let n_merges = merges.len();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::string("gemma4"));
    w.set("tokenizer.ggml.model", Value::string("gemma4"));
    w.set("tokenizer.ggml.pre", Value::string("gemma4"));
    w.set(
        "tokenizer.ggml.tokens",
        Value::strings(tokens.iter().map(|t| t.to_string())),
    );
    w.set("tokenizer.ggml.scores", Value::f32s(scores.iter().copied()));
    w.set(
        "tokenizer.ggml.token_type",
        Value::i32s(types.iter().map(|&t| t as i32)),
    );
    w.set(
        "tokenizer.ggml.merges",
        Value::strings(merges.iter().map(|m| format!("{} {}", m.4, m.5))),
    );
    for key in [
        "bos_token_id",
        "eos_token_id",
        "unknown_token_id",
        "padding_token_id",
    ] {
        let key = format!("tokenizer.ggml.{key}");
        w.set(&key, Value::U32(g.get_u32(&key).unwrap()));
    }
    w.set("tokenizer.ggml.add_bos_token", Value::Bool(true));
    w.set("tokenizer.ggml.add_eos_token", Value::Bool(false));
    w.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    let path = dir.join("gemma4-vocab.gguf");
    w.create(&path).unwrap().finish().unwrap();
    (path, n_merges)
}

/// Gemma 4's tokenizer on that file gives llama.cpp's ids for every line of the fixture:
/// llama.cpp's gemma4 BPE on it (scripts/llama-ref/tokenize_batch.cpp) gives, for all 3,632,
/// exactly the ids it gives with the SentencePiece vocabulary, so the fixture's ids are its
/// ids (measured, README). What the 513,511 merges cost is printed: `gemlet tokenize` on the
/// file, load and one line, time and peak RSS.
#[test]
fn gemma4_bpe_vocabulary_gives_llama_cpp_s_ids() {
    let dir = common::scratch("gemma4-vocab");
    let (path, n_merges) = gemma4_vocab_file(&dir);
    assert_eq!(n_merges, 513_511);
    let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    let mut failures = Vec::new();
    for (i, c) in cases().iter().enumerate() {
        for (parse, want) in [(true, &c.ids), (false, &c.ids_no_special)] {
            let got = tok.encode(&c.text, true, parse).unwrap();
            if &got != want {
                failures.push(format!(
                    "line {i} ({}) parse_special {parse}: {:?}\n  got  {got:?}\n  want {want:?}",
                    c.kind, c.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n")
    );
    let m = common::run_measured(
        &[
            "tokenize",
            "-m",
            path.to_str().unwrap(),
            "--ids",
            "Hello world\n\n\nagain",
        ],
        None,
    );
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    eprintln!(
        "gemma4 vocabulary, {n_merges} merges: gemlet tokenize {:.2} s, peak RSS {} MB",
        m.secs,
        m.max_rss >> 20
    );
}
