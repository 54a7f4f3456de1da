//! Any bytes as a GGUF: parsing either fails cleanly or yields a file whose every key, value
//! and tensor can be read; a vocabulary in it builds a tokenizer or fails cleanly, and the
//! tokenizer encodes and decodes text.
#![no_main]

use gemlet::gguf::Gguf;
use gemlet::tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    for (key, value) in g.metadata() {
        let _ = (key.len(), value.display(64));
    }
    for t in g.tensors() {
        let _ = g.tensor_data(t).len();
    }
    if let Ok(tok) = Tokenizer::from_gguf(&g) {
        for text in ["Hello, world!", "  spaces\n\ttabs", "<start_of_turn>user", "日本語 🙂"] {
            if let Ok(ids) = tok.encode(text, true, true) {
                let _ = tok.decode(&ids);
            }
        }
    }
});
