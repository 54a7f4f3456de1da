//! The real Gemma 3 270M model (Q4_K_M, and its Q8_0 and Q4_0 requantizations) against
//! llama.cpp's greedy runs on 14 prompts (tests/fixtures/gemma3-270m-*greedy*.jsonl: prose, code,
//! chat-formatted, non-English, a 601-token prompt past the 512-token sliding window, a
//! one-token prompt).
//!
//! Tolerances, from ../shared/fixtures/README-gemma3-270m-greedy.md: inside llama.cpp itself,
//! equally valid kernels (flash attention on/off, repacked or plain Q4_K/Q5_0 dot products) move
//! logits by up to 1.2 and change the greedy continuation of most prompts, because the smallest
//! top-1/top-2 margins are 0.003–0.3. gemlet runs by default repacked kernels for prompts and,
//! for K-quants, plain ones for single tokens (the reference repacked throughout), or plain
//! ones throughout (`--no-repack`, the FA-off test), so it is held to: identical prompt ids;
//! fed the reference's own tokens, the top-10 logits within llama.cpp's own spread between
//! equally valid kernels (1.2: flash attention on/off, and repack on/off for Q4_K_M, 0.87; for
//! Q4_0, whose repacked kernels differ most, repacked logits even depend on the CPU: up to 5)
//! with a mean under 0.3, and the same top token wherever the reference margin exceeds 1.5;
//! free-running greedy ids equal up to the reference's first step with a margin under 1.5.
//!
//! The fixtures were made on another CPU (an AVX-512 Zen 4), and ggml's kernels sum in a
//! different order on different CPUs. Measured with llama.cpp alone (same commit, flags and
//! kernels, repacking off): this project's Zen 1 (AVX2) against the Xeon that made the
//! no-repack fixture moves top-10 logits by up to 2.1 and changes 8 of 14 greedy runs. So the
//! cross-CPU logit tolerance is 2.5 (measured on a Zen 1: 1.43 FA on, 1.45 FA off, 0.76 Q8_0),
//! and the strong guarantee comes from the same-kernels test, whose reference is made on the
//! CPU the test runs on (scripts/llama-ref/same-cpu-ref.sh): there logits agree to float
//! rounding. Q4_0's repacked kernels move more from CPU to CPU (llama.cpp alone: 4.9 on one
//! Xeon, 8 on another), so its fixture test subtracts llama.cpp's own difference on this CPU,
//! measured from the same-CPU reference ([`Drift`]).

use crate::common;

use gemlet::model::weights::Repack;
use gemlet::model::Model;
use gemlet::sampling::{Sampler, SamplerParams};
use gemlet::session::{Session, SessionParams};
use serde_json::Value as Json;
use std::collections::HashMap;

const MARGIN: f64 = 1.5;
const LOGIT_TOL: f32 = 2.5;
const LOGIT_MEAN_TOL: f32 = 0.3;

struct Case {
    id: String,
    prompt: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    margins: Vec<f64>,
    top_logits: Vec<Json>,
}

fn cases(file: &str) -> Vec<Case> {
    cases_at(&common::fixture(file))
}

fn cases_at(path: &std::path::Path) -> Vec<Case> {
    let ids = common::json_ids;
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).unwrap();
            Case {
                id: v["id"].as_str().unwrap().into(),
                prompt: v["prompt"].as_str().unwrap().into(),
                prompt_ids: ids(&v["prompt_ids"]),
                greedy_ids: ids(&v["greedy_ids"]),
                margins: v["greedy_margins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_f64().unwrap())
                    .collect(),
                top_logits: v["top_logits"].as_array().unwrap().clone(),
            }
        })
        .collect()
}

fn params(n_threads: usize, repack: Repack) -> SessionParams {
    SessionParams {
        n_ctx: 2048,
        n_batch: 512,
        n_threads,
        repack,
        ..SessionParams::default()
    }
}

fn argmax(v: &[f32]) -> u32 {
    // Ties go to the lowest id, as in the reference.
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// How far llama.cpp itself, run on this CPU with the kernels gemlet runs, is from a fixture made
/// on another CPU: for Q4_0, whose repacked kernels differ most from CPU to CPU, that spread
/// reaches 4.9 on one Xeon and 8 on another, past any fixed tolerance. Read from the same-CPU
/// reference (scripts/llama-ref/same-cpu-ref.sh): per case, the steps on which llama.cpp here
/// follows the fixture's greedy path (beyond them the two are conditioned on other tokens and
/// the fixture no longer says what llama.cpp computes here), and its logit differences there.
struct Drift {
    /// Per case id: steps followed, and per (position, token) llama.cpp's own difference.
    cases: HashMap<String, (usize, OwnDiffs)>,
}

type OwnDiffs = HashMap<(u64, u64), f32>;

impl Drift {
    fn measure(file: &str, same_cpu_reference: &std::path::Path) -> Drift {
        let here: HashMap<String, Case> = cases_at(same_cpu_reference)
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut out = HashMap::new();
        for c in cases(file) {
            let h = &here[&c.id];
            let followed = h
                .greedy_ids
                .iter()
                .zip(&c.greedy_ids)
                .take_while(|(a, b)| a == b)
                .count();
            let mut diffs = HashMap::new();
            for (r, rh) in c.top_logits.iter().zip(&h.top_logits) {
                let pos = r["pos"].as_u64().unwrap();
                assert_eq!(rh["pos"].as_u64(), Some(pos), "{}: positions", c.id);
                let logits = |v: &Json| -> HashMap<u64, f32> {
                    v["top"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32))
                        .collect()
                };
                let (lf, lh) = (logits(r), logits(rh));
                // A token missing from one top-10 gets the position's largest difference.
                let common: Vec<f32> = lf
                    .iter()
                    .filter_map(|(id, x)| lh.get(id).map(|y| (x - y).abs()))
                    .collect();
                let widest = common.iter().copied().fold(0f32, f32::max);
                for (&id, x) in &lf {
                    let d = lh.get(&id).map_or(widest, |y| (x - y).abs());
                    diffs.insert((pos, id), d);
                }
            }
            out.insert(c.id.clone(), (followed, diffs));
        }
        Drift { cases: out }
    }
}

fn check_file(
    model: std::path::PathBuf,
    file: &str,
    logit_tol: f32,
    n_threads: usize,
    repack: Repack,
) {
    check_file_with(model, file, logit_tol, n_threads, repack, None)
}

fn check_file_with(
    model: std::path::PathBuf,
    file: &str,
    logit_tol: f32,
    n_threads: usize,
    repack: Repack,
    drift: Option<&Drift>,
) {
    let _one_at_a_time = common::exclusive();
    let model = Model::load(model).unwrap();
    let tok = model.tokenizer();
    let mut worst_logit = 0f32;
    let (mut sum, mut n) = (0f32, 0);
    let mut report = Vec::new();
    for c in cases(file) {
        // Steps the fixture speaks for on this CPU, and llama.cpp's own difference at each
        // (none without a drift measurement: the fixture's CPU is taken as this one's).
        let (followed, own) = match drift {
            Some(d) => {
                let (f, diffs) = &d.cases[&c.id];
                (*f, Some(diffs))
            }
            None => (usize::MAX, None),
        };
        assert_eq!(
            tok.encode(&c.prompt, true, true).unwrap(),
            c.prompt_ids,
            "{}: prompt ids",
            c.id
        );

        // Teacher forcing: the prompt, then the reference's own tokens one at a time.
        let mut s = Session::new(&model, params(n_threads, repack)).unwrap();
        s.eval(&c.prompt_ids).unwrap();
        let mut rows = vec![s.logits().to_vec()];
        for &t in &c.greedy_ids[..c.greedy_ids.len() - 1] {
            s.eval(&[t]).unwrap();
            rows.push(s.logits().to_vec());
        }
        for (k, row) in rows.iter().enumerate().take(followed.saturating_add(1)) {
            if c.margins[k] > MARGIN {
                assert_eq!(
                    argmax(row),
                    c.greedy_ids[k],
                    "{}: top token at step {k} (margin {})",
                    c.id,
                    c.margins[k]
                );
            }
        }
        for r in &c.top_logits {
            let pos = r["pos"].as_u64().unwrap();
            let k = pos as usize + 1 - c.prompt_ids.len();
            if k > followed {
                continue;
            }
            for pair in r["top"].as_array().unwrap() {
                let id = pair[0].as_u64().unwrap() as usize;
                let want = pair[1].as_f64().unwrap() as f32;
                // Past llama.cpp's own difference on this CPU.
                let own = own.map_or(0.0, |o| o[&(pos, id as u64)]);
                let d = ((rows[k][id] - want).abs() - own).max(0.0);
                worst_logit = worst_logit.max(d);
                sum += d;
                n += 1;
                assert!(
                    d <= logit_tol,
                    "{}: logit of {id} at step {k}: {} vs {want}",
                    c.id,
                    rows[k][id]
                );
            }
        }

        // Free-running greedy.
        let mut s = Session::new(&model, params(n_threads, repack)).unwrap();
        s.eval(&c.prompt_ids).unwrap();
        let mut sampler = Sampler::new(SamplerParams::greedy());
        let ids = s
            .generate(&mut sampler, c.greedy_ids.len(), |_| true)
            .unwrap()
            .ids;
        let must = c
            .margins
            .iter()
            .position(|&m| m < MARGIN)
            .unwrap_or(c.margins.len())
            .min(followed);
        assert_eq!(
            ids[..must.min(ids.len())],
            c.greedy_ids[..must.min(ids.len())],
            "{}: greedy ids",
            c.id
        );
        let same = ids
            .iter()
            .zip(&c.greedy_ids)
            .take_while(|(a, b)| a == b)
            .count();
        report.push(format!(
            "{}: {same}/{} ids equal (required {must})",
            c.id,
            c.greedy_ids.len()
        ));
    }
    let mean = sum / n as f32;
    eprintln!(
        "{file}: top-10 logits: max difference {worst_logit:.3}, mean {mean:.3} over {n}\n{}",
        report.join("\n")
    );
    assert!(
        mean <= LOGIT_MEAN_TOL,
        "mean top-10 logit difference {mean}"
    );
}

#[test]
fn q4_k_m_matches_llama_cpp_flash_attention_on() {
    check_file(
        common::real_model(),
        "gemma3-270m-greedy.jsonl",
        LOGIT_TOL,
        2,
        Repack::Auto,
    );
}

#[test]
fn q4_k_m_matches_llama_cpp_flash_attention_off() {
    check_file(
        common::real_model(),
        "gemma3-270m-greedy-fa-off.jsonl",
        LOGIT_TOL,
        2,
        Repack::Off,
    );
}

#[test]
fn q8_0_matches_llama_cpp() {
    check_file(
        common::requantized_model("gemma-3-270m-q8_0.gguf"),
        "gemma3-270m-q8_0-greedy.jsonl",
        LOGIT_TOL,
        2,
        Repack::Auto,
    );
}

/// The Q4_0 fixture (llama.cpp repacking, another CPU), beyond llama.cpp's own difference on
/// this CPU (see [`Drift`]): gemlet's default repacks Q4_0 as llama.cpp does.
#[test]
fn q4_0_matches_llama_cpp() {
    let file = "gemma3-270m-q4_0-greedy.jsonl";
    let drift = Drift::measure(file, &common::same_cpu_reference(true));
    check_file_with(
        common::requantized_model("gemma-3-270m-q4_0.gguf"),
        file,
        LOGIT_TOL,
        2,
        Repack::Auto,
        Some(&drift),
    );
}

/// The same Q4_0 model against llama.cpp with weight repacking off, i.e. the same ggml kernels
/// gemlet runs, on this CPU and on one thread like the reference (with 512 or more cached
/// positions, flash attention splits the keys across threads and the reduction order
/// changes): here the logits agree to float rounding (measured: 0.000 over 700), not just
/// within kernel spread.
#[test]
fn q4_0_matches_llama_cpp_same_kernels() {
    check_file(
        common::requantized_model("gemma-3-270m-q4_0.gguf"),
        common::same_cpu_reference(false).to_str().unwrap(),
        0.01,
        1,
        Repack::Off,
    );
}

/// `--repack` against llama.cpp with repacking on (its default), both on this CPU: the same
/// interleaved Q4_0 kernels, so again agreement to float rounding.
#[test]
fn q4_0_repacked_matches_llama_cpp_repacked_same_kernels() {
    check_file(
        common::requantized_model("gemma-3-270m-q4_0.gguf"),
        common::same_cpu_reference(true).to_str().unwrap(),
        0.01,
        1,
        Repack::All,
    );
}

/// `--repack` on the Q4_K_M file against the fixture (llama.cpp, repacking on, another CPU):
/// the cross-CPU tolerance.
#[test]
fn q4_k_m_repacked_matches_llama_cpp() {
    check_file(
        common::real_model(),
        "gemma3-270m-greedy.jsonl",
        LOGIT_TOL,
        2,
        Repack::All,
    );
}

/// `generate --json --n-probs 10`, run as a user runs it, against llama.cpp on this CPU with
/// the same kernels: every generated token's ten best raw logits, ids and values, equal to
/// llama.cpp's (0.01, float rounding, as above) while the two follow the same tokens, on the
/// steps the reference records (the first five of each of the 14 prompts).
#[test]
fn generate_n_probs_reports_llama_cpp_s_top_logits() {
    let model = common::requantized_model("gemma-3-270m-q4_0.gguf");
    let reference = common::same_cpu_reference(false);
    let mut compared = 0;
    let cases = cases_at(&reference);
    for c in &cases {
        let m = model.to_str().unwrap();
        let (stdout, stderr, ok) = common::run_gemlet(
            &[
                "generate",
                "-m",
                m,
                "--no-repack",
                "-t",
                "1",
                "--temp",
                "0",
                "--json",
                "--n-probs",
                "10",
                "-n",
                "8",
                "-p",
                &c.prompt,
            ],
            None,
        );
        assert!(ok, "{stderr}");
        let j: Json = serde_json::from_str(&stdout).unwrap();
        assert_eq!(common::json_ids(&j["prompt_ids"]), c.prompt_ids, "{}", c.id);
        let ids = common::json_ids(&j["ids"]);
        let top = j["top_logits"].as_array().unwrap();
        assert_eq!(
            top.len(),
            ids.len(),
            "{}: one list per generated token",
            c.id
        );
        for (k, (id, got)) in ids.iter().zip(top).enumerate() {
            let got = got.as_array().unwrap();
            assert_eq!(got.len(), 10);
            // Greedy: the token generated is the best of its list.
            assert_eq!(got[0][0].as_u64(), Some(*id as u64), "{}: step {k}", c.id);
            if c.greedy_ids.get(..k) != ids.get(..k) || k >= c.top_logits.len() {
                break;
            }
            let want = c.top_logits[k]["top"].as_array().unwrap();
            for (g, w) in got.iter().zip(want) {
                // Ids may swap where two logits tie to rounding; values must not move.
                let (gv, wv) = (g[1].as_f64().unwrap(), w[1].as_f64().unwrap());
                assert!((gv - wv).abs() <= 0.01, "{}: step {k}: {g} vs {w}", c.id);
            }
            compared += 1;
        }
    }
    // The reference records the first five steps of each case.
    assert!(compared >= 5 * cases.len(), "compared {compared} steps");
}
