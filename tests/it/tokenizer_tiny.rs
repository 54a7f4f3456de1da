//! The tokenizer on the tiny models' 512-token vocabulary, against llama.cpp's ids recorded in
//! each tests/fixtures/tiny/*.logits.json (`tokenize`: byte fallback, words built by merges,
//! newlines, a chat turn with special tokens).

use crate::common;

use gemlet::gguf::Gguf;
use gemlet::tokenizer::Tokenizer;
use serde_json::Value as Json;

#[test]
fn tiny_vocabularies_match_llama_cpp() {
    let dir = common::fixture("tiny");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "gguf") {
            continue;
        }
        let json_path = path.with_extension("logits.json");
        let reference: Json =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
        for case in reference["tokenize"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want = common::json_ids(&case["ids"]);
            let got = tok
                .encode(
                    text,
                    case["add_special"].as_bool().unwrap(),
                    case["parse_special"].as_bool().unwrap(),
                )
                .unwrap();
            assert_eq!(got, want, "{}: {text:?}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 15 * 7);
}
