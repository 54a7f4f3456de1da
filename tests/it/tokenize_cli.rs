//! `gemlet tokenize` as a user runs it: llama-tokenize's flags, and --jsonl for corpora.

use crate::common;

use std::process::Command;

fn gemlet(args: &[&str], stdin: Option<&str>) -> (String, String, bool) {
    let model = common::real_model();
    let mut all = vec!["tokenize", "-m", model.to_str().unwrap()];
    all.extend_from_slice(args);
    common::run_gemlet(&all, stdin)
}

#[test]
fn ids_pieces_and_flags() {
    let (out, _, ok) = gemlet(&["--ids", "Hello world"], None);
    assert!(ok);
    assert_eq!(out.trim(), "[2,9259,1902]");
    let (out, _, _) = gemlet(&["--ids", "--no-bos", "Hello world"], None);
    assert_eq!(out.trim(), "[9259,1902]");
    let (out, _, _) = gemlet(&["--ids", "--no-bos", "<start_of_turn>"], None);
    assert_eq!(out.trim(), "[105]");
    let (out, _, _) = gemlet(
        &["--ids", "--no-bos", "--no-parse-special", "<start_of_turn>"],
        None,
    );
    assert_ne!(out.trim(), "[105]");
    let (out, _, _) = gemlet(&["Hello world"], None);
    assert_eq!(
        out,
        "     2 -> \"<bos>\"\n  9259 -> \"Hello\"\n  1902 -> \" world\"\n"
    );
}

#[test]
fn jsonl_keeps_order_in_one_process() {
    let input =
        "{\"text\": \"Hello world\"}\n{\"text\": \"\"}\n{\"text\": \"<start_of_turn>user\\n\"}\n";
    let (out, err, ok) = gemlet(&["--jsonl"], Some(input));
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "{\"ids\":[2,9259,1902]}",
            "{\"ids\":[2]}",
            "{\"ids\":[2,105,2364,107]}"
        ]
    );
    let (_, err, ok) = gemlet(&["--jsonl"], Some("{\"txt\": 1}\n"));
    assert!(
        !ok && err.contains("line 1") && err.contains("\"text\""),
        "{err}"
    );
}

#[test]
fn missing_model_names_the_fetch_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
        .args(["tokenize", "hi"])
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success());
    assert!(err.contains("scripts/fetch-model.sh"), "{err}");
}

#[test]
fn a_20_mb_line_takes_memory_in_proportion() {
    // Before text was tokenized in pieces, a 20 MB line took 1.85 GB (84 bytes per byte) and
    // 30 s. Now the pipeline's cost follows a 64 KiB piece; what grows with the line is the
    // line, its parsed string, the ids and the output: measured 137 MB, 32 MB of it the model's
    // vocabulary. The bound leaves twice that room.
    let words = [
        "the",
        "quick",
        "brown",
        "fox",
        "über",
        "naïve",
        "日本語",
        "—",
        "again,",
    ];
    let mut text = String::with_capacity(21 << 20);
    let mut i = 0usize;
    while text.len() < 20 << 20 {
        text.push_str(words[i * 7 % words.len()]);
        text.push(' ');
        i += 1;
    }
    let dir = common::scratch("tokenize-big");
    let input = dir.join("big.jsonl");
    std::fs::write(
        &input,
        serde_json::json!({ "text": text }).to_string() + "\n",
    )
    .unwrap();
    let model = common::real_model();
    let m = common::run_measured(
        &["tokenize", "-m", model.to_str().unwrap(), "--jsonl"],
        Some(&input),
    );
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    let ids: serde_json::Value = serde_json::from_str(m.stdout.trim()).unwrap();
    let n = ids["ids"].as_array().unwrap().len();
    assert!(n > text.len() / 8, "{n} ids for {} bytes", text.len());
    let bound = (64 << 20) + 8 * text.len() as u64;
    assert!(
        m.max_rss < bound,
        "peak RSS {} MB for {} MB of text (bound {} MB)",
        m.max_rss >> 20,
        text.len() >> 20,
        bound >> 20
    );
    std::fs::remove_file(&input).unwrap();
}
