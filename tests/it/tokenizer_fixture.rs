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
