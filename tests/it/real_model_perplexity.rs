//! Perplexity of the real model on two texts (GPL-3 and GFDL-1.3 from Debian's
//! common-licenses), against llama-perplexity's figures recorded in
//! tests/fixtures/perplexity-llama-cpp.json. Tolerance 1.5%: flash attention on/off alone moves
//! llama.cpp's own figure by 0.7%, and the firmest check of the whole forward pass is that no
//! systematic error accumulates over 5,865 scored tokens.

use crate::common;

use gemlet::model::Model;
use gemlet::perplexity::perplexity;
use gemlet::session::{Session, SessionParams};
use serde_json::Value as Json;

#[test]
fn perplexity_matches_llama_perplexity() {
    let reference: Json = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("perplexity-llama-cpp.json")).unwrap(),
    )
    .unwrap();
    let model = Model::load(common::real_model()).unwrap();
    let mut session = Session::new(
        &model,
        SessionParams {
            n_ctx: 512,
            n_batch: 512,
            n_threads: 2,
            ..SessionParams::default()
        },
    )
    .unwrap();
    for (file, want) in reference["texts"].as_object().unwrap() {
        let text = std::fs::read_to_string(common::fixture(&format!("text/{file}"))).unwrap();
        let tokens = model.tokenizer().encode(&text, true, true).unwrap();
        let got = perplexity(&mut session, &tokens, None, |_, _| {}).unwrap();
        assert_eq!(
            got.chunks as u64,
            want["chunks"].as_u64().unwrap(),
            "{file}"
        );
        let ppl = want["default"]["ppl"].as_f64().unwrap();
        let rel = (got.ppl - ppl).abs() / ppl;
        eprintln!(
            "{file}: gemlet {:.4} +/- {:.5}, llama.cpp {ppl} ({:+.2}%)",
            got.ppl,
            got.error,
            100.0 * (got.ppl / ppl - 1.0)
        );
        assert!(
            rel <= 0.015,
            "{file}: perplexity {} vs llama.cpp {ppl}",
            got.ppl
        );
        let err = want["default"]["error"].as_f64().unwrap();
        assert!(
            (got.error - err).abs() / err <= 0.05,
            "{file}: error {} vs {err}",
            got.error
        );
    }
}
