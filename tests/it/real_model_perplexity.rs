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

/// `gemlet perplexity` on the tiny Gemma 4 models (dense and experts) prints the running
/// figures llama-perplexity prints on them, chunk by chunk, run beside it, `--no-repack` against `-nr` and `--repack`
/// against its default (which repacks the experts too): the same kernels, so the same number to
/// its last printed digit.
#[test]
fn tiny_gemma4_perplexity_equals_llama_perplexity() {
    let text = common::fixture("text/gpl-3.txt");
    let text = text.to_str().unwrap();
    // The running estimate after each chunk, "[1]541.4093,[2]..." as both print it.
    let chunks = |out: &str| -> Vec<String> {
        out.split('[')
            .skip(1)
            .filter_map(|p| {
                let (n, rest) = p.split_once(']')?;
                n.parse::<u32>().ok()?;
                let v: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                (!v.is_empty()).then_some(v)
            })
            .collect()
    };
    for name in ["tiny-gemma4-f16", "tiny-gemma4-moe-q4_0"] {
        let model = common::fixture(&format!("tiny/{name}.gguf"));
        let m = model.to_str().unwrap();
        let args = [
            "-m", m, "-f", text, "-c", "64", "-b", "64", "-t", "2", "--chunks", "20",
        ];
        // --no-repack against -nr, --repack (experts included) against llama.cpp's default.
        for (ours, theirs) in [("--no-repack", Some("-nr")), ("--repack", None)] {
            let (out, err, ok) =
                common::run_gemlet(&[&["perplexity", ours][..], &args[..]].concat(), None);
            assert!(ok, "{err}");
            let got = chunks(&(out + &err));
            assert_eq!(got.len(), 20, "{name} {ours}: {got:?}");
            let llama = std::process::Command::new(common::llama_tool("llama-perplexity"))
                .args(args)
                .args(theirs)
                .output()
                .unwrap();
            assert!(llama.status.success());
            // llama.cpp's logger writes from a thread of its own, and under the full suite's
            // load it loses its last lines at exit: every chunk it did print must agree.
            let printed = chunks(
                &(String::from_utf8_lossy(&llama.stdout).to_string()
                    + &String::from_utf8_lossy(&llama.stderr)),
            );
            assert!(
                printed.len() >= 10,
                "{name}: llama-perplexity printed {printed:?}"
            );
            assert!(printed.len() <= 20, "{name}: {printed:?}");
            assert_eq!(got[..printed.len()], printed[..], "{name} {ours}");
        }
    }
}
