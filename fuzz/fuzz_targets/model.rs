//! Any bytes as a model file: loading either fails with an error, or gives a model that runs
//! one token (where the crafted-type aborts inside ggml came from: a file that loads must also
//! compute without a signal).
#![no_main]

use gemlet::model::Model;
use gemlet::session::{Session, SessionParams};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    // Model::load takes a path: the input goes to a file of this process's own.
    let path = std::env::temp_dir().join(format!("gemlet-fuzz-model-{}.gguf", std::process::id()));
    let Ok(mut f) = std::fs::File::create(&path) else {
        return;
    };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    let Ok(model) = Model::load(&path) else {
        return;
    };
    let params = SessionParams {
        n_ctx: 16,
        n_batch: 4,
        n_threads: 1,
        warmup: false,
        ..SessionParams::default()
    };
    let session = Session::new(&model, params);
    if let Ok(mut s) = session {
        let _ = s.eval(&[1, 2]);
    }
});
