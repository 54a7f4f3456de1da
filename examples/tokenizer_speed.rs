//! Tokenizer build time and encoding speed on the real model.
//!
//! usage: cargo run --release --example tokenizer_speed [MODEL] [TEXT_FILE]
//! Without TEXT_FILE, about 1 MB of English prose is made from the tokenizer fixture's prose lines.

use gemlet::gguf::Gguf;
use gemlet::tokenizer::Tokenizer;
use std::io::{BufRead, BufReader};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let home = std::env::var("HOME").unwrap_or_default();
    let model = args.get(1).cloned().unwrap_or(format!(
        "{home}/.cache/gemlet/models/gemma-3-270m-q4_k_m.gguf"
    ));
    let t0 = Instant::now();
    let g = Gguf::open(&model).expect("open model");
    let t1 = Instant::now();
    let tok = Tokenizer::from_gguf(&g).expect("build tokenizer");
    let t2 = Instant::now();
    println!("open GGUF: {:.1} ms", (t1 - t0).as_secs_f64() * 1e3);
    println!(
        "build tokenizer ({} tokens): {:.1} ms",
        tok.n_vocab(),
        (t2 - t1).as_secs_f64() * 1e3
    );

    let text = match args.get(2) {
        Some(p) => std::fs::read_to_string(p).expect("read text"),
        None => english_megabyte(),
    };
    // One encode per paragraph, as a chat or a corpus tokenizer would call it.
    let paragraphs: Vec<&str> = text.split("\n\n").collect();
    let t3 = Instant::now();
    let mut n_tokens = 0;
    for p in &paragraphs {
        n_tokens += tok.encode(p, false, true).unwrap().len();
    }
    let secs = t3.elapsed().as_secs_f64();
    println!(
        "encode {:.2} MB in {} paragraphs: {} tokens, {:.3} s, {:.2} MB/s",
        text.len() as f64 / 1e6,
        paragraphs.len(),
        n_tokens,
        secs,
        text.len() as f64 / 1e6 / secs
    );
}

fn english_megabyte() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gemma3-tokenize.jsonl.gz"
    );
    let f = std::fs::File::open(path).expect("fixture");
    let prose: Vec<String> = BufReader::new(flate2::read::GzDecoder::new(f))
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
        .filter(|v| v["kind"].as_str().unwrap_or("").starts_with("prose"))
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect();
    let mut text = String::new();
    while text.len() < 1_000_000 {
        for p in &prose {
            text.push_str(p);
            text.push_str("\n\n");
        }
    }
    text
}
