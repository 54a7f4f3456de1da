//! The tokenizer on the tiny models' 512-token vocabulary, against llama.cpp's ids recorded in
//! each tests/fixtures/tiny/*.logits.json (`tokenize`: byte fallback, words built by merges,
//! newlines, a chat turn with special tokens).

use crate::common;

use gemlet::gguf::Gguf;
use gemlet::tokenizer::Tokenizer;
use serde_json::Value as Json;

#[test]
fn tiny_vocabularies_match_llama_cpp() {
    let mut checked = 0;
    for path in common::tiny_models("logits.json", 25) {
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
    assert_eq!(checked, 25 * 7);
}

#[test]
fn chunked_tokenizing_gives_the_same_ids() {
    // Pieces of 1 and 3 bytes split the text at every place no token spans: the ids must not
    // change (the 64 KiB pieces of real use are exercised by tokenizer_fixture on long text).
    for name in ["tiny-gemma3-f32", "tiny-gemma-q8_0"] {
        let path = common::fixture(&format!("tiny/{name}.gguf"));
        let reference: Json = serde_json::from_str(
            &std::fs::read_to_string(path.with_extension("logits.json")).unwrap(),
        )
        .unwrap();
        let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
        for case in reference["tokenize"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let (add, parse) = (
                case["add_special"].as_bool().unwrap(),
                case["parse_special"].as_bool().unwrap(),
            );
            let want = common::json_ids(&case["ids"]);
            for chunk in [1, 3] {
                let got = tok.encode_in_chunks(text, add, parse, chunk).unwrap();
                assert_eq!(got, want, "{name}, pieces of {chunk}: {text:?}");
            }
        }
    }
}

#[test]
fn space_prefix_matches_llama_tokenize() {
    // The tiny vocabulary with tokenizer.ggml.add_space_prefix on (Gemma's files have it off):
    // llama.cpp puts a "▁" before the text and after each special token, never at a split.
    let dir = common::scratch("space-prefix");
    let path = crate::rewrite::with_key(
        &dir,
        "tokenizer.ggml.add_space_prefix",
        gemlet::gguf::Value::Bool(true),
    );
    let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    let texts = [
        "hello world",
        " leading space",
        "<start_of_turn>user\nhi there<end_of_turn>\n<start_of_turn>model\n",
        "two  spaces and\nnew lines\n\n",
    ];
    for text in texts {
        let out = std::process::Command::new(common::llama_tool("llama-tokenize"))
            .arg("-m")
            .arg(&path)
            .args(["--ids", "--log-disable", "-p", text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let want: Vec<u32> = serde_json::from_str(stdout.trim()).unwrap();
        for chunk in [1, 2, 1 << 16] {
            let got = tok.encode_in_chunks(text, true, true, chunk).unwrap();
            assert_eq!(got, want, "pieces of {chunk}: {text:?}");
        }
    }
}

#[test]
fn a_text_stored_as_normal_and_user_defined_splits_as_the_added_one() {
    // Found by the tokenizer fuzz target: "x" is both a normal and a user-defined token. The
    // pipeline matches it as the added one and puts a "▁" after it; the split rule used to ask
    // the token table, saw the normal token, and split right after it, where no "▁" is put.
    use gemlet::gguf::{GgufWriter, Value};
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::string("gemma3"));
    w.set("tokenizer.ggml.model", Value::string("llama"));
    let tokens = ["<unk>", "<s>", "</s>", "x", "x", "y", "▁"].map(String::from);
    w.set("tokenizer.ggml.tokens", Value::strings(tokens.to_vec()));
    w.set("tokenizer.ggml.scores", Value::f32s(vec![0.0; 7]));
    w.set(
        "tokenizer.ggml.token_type",
        Value::i32s(vec![2, 3, 3, 1, 4, 1, 1]),
    );
    w.set("tokenizer.ggml.bos_token_id", Value::U32(1));
    w.set("tokenizer.ggml.eos_token_id", Value::U32(2));
    w.set("tokenizer.ggml.unknown_token_id", Value::U32(0));
    w.set("tokenizer.ggml.add_space_prefix", Value::Bool(true));
    let bytes = w.write_to(Vec::new()).unwrap().finish().unwrap();
    let tok = Tokenizer::from_gguf(&Gguf::from_bytes(bytes).unwrap()).unwrap();
    let text = "yxy";
    let whole = tok.encode_in_chunks(text, true, true, usize::MAX).unwrap();
    assert_eq!(whole.iter().filter(|&&id| id == 6).count(), 2, "{whole:?}");
    for chunk in [1, 2] {
        let got = tok.encode_in_chunks(text, true, true, chunk).unwrap();
        assert_eq!(got, whole, "pieces of {chunk}");
    }
}
