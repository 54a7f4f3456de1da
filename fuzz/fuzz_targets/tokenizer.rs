//! A vocabulary and a text from the fuzzer's bytes: the tokenizer builds or fails cleanly, and
//! the ids of the text do not depend on the size of the pieces it is tokenized in (the split
//! rule that keeps memory bounded must never change a merge or an added-token match).
//!
//! Input: the text, then tokens, separated by 0xFF bytes. Each token's first byte picks its
//! type (normal mostly; control, user-defined, byte, unknown); scores follow token order, with
//! ties. The first byte of the input also picks add_space_prefix.
#![no_main]

use gemlet::gguf::{Gguf, GgufWriter, Value};
use gemlet::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xFF);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
    let mut types = vec![2, 3, 3];
    for p in parts.take(2000) {
        let Some((&kind, rest)) = p.split_first() else {
            continue;
        };
        let t = String::from_utf8_lossy(rest).replace(' ', "▁");
        if t.is_empty() {
            continue;
        }
        types.push(match kind % 16 {
            0 => 3,
            1 => 4,
            2 => 6,
            _ => 1,
        });
        tokens.push(t);
    }
    let n = tokens.len();
    let scores: Vec<f32> = (0..n).map(|i| -((i / 2) as f32)).collect();
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::string("gemma3"));
    w.set("tokenizer.ggml.model", Value::string("llama"));
    w.set("tokenizer.ggml.tokens", Value::strings(tokens));
    w.set("tokenizer.ggml.scores", Value::f32s(scores));
    w.set("tokenizer.ggml.token_type", Value::i32s(types));
    w.set("tokenizer.ggml.bos_token_id", Value::U32(1));
    w.set("tokenizer.ggml.eos_token_id", Value::U32(2));
    w.set("tokenizer.ggml.unknown_token_id", Value::U32(0));
    let prefix = data.first().is_some_and(|b| b & 1 == 1);
    w.set("tokenizer.ggml.add_space_prefix", Value::Bool(prefix));
    let bytes = w.write_to(Vec::new()).unwrap().finish().unwrap();
    let g = Gguf::from_bytes(bytes).unwrap();
    let Ok(tok) = Tokenizer::from_gguf(&g) else {
        return;
    };
    for parse_special in [true, false] {
        let whole = tok.encode_in_chunks(&text, true, parse_special, usize::MAX).unwrap();
        for chunk in [1, 2, 5, 16] {
            let pieces = tok.encode_in_chunks(&text, true, parse_special, chunk).unwrap();
            assert_eq!(pieces, whole, "pieces of {chunk}, parse_special {parse_special}");
        }
        let _ = tok.decode(&whole);
    }
});
