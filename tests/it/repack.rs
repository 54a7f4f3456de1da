//! Repacking in place (`--repack`, and the default for Q4_0) keeps memory where it was: each
//! repacked matrix is a copy in ggml's interleaved layout, and the mapped pages it replaces
//! are given back. The default's copies for K-quants are used by batches only, and counted by
//! the memory plan. (That the logits are llama.cpp's with repacking is
//! real_model_greedy.rs and tiny_models.rs.)

use crate::common;

use gemlet::gguf::OpenOptions;
use gemlet::model::weights::Repack;
use gemlet::model::Model;
use gemlet::session::{Session, SessionParams};

/// Resident memory of this process (mapped file pages included), in bytes.
fn rss() -> usize {
    status_kb("VmRSS:") * 1024
}

/// The peak of that so far.
fn peak_rss() -> usize {
    status_kb("VmHWM:") * 1024
}

fn status_kb(key: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("the key is in /proc/self/status")
}

fn params(repack: Repack) -> SessionParams {
    SessionParams {
        n_ctx: 256,
        n_batch: 64,
        n_threads: 2,
        repack,
        ..SessionParams::default()
    }
}

/// The Q4_0 file: 126 Q4_0 matrices (53.8 MiB) repack on AVX2. The map is populated at load,
/// so all of them are resident before the session starts. Kept, the copies would add their
/// full size; released, what remains is the session itself and the pages at the edges of
/// each matrix. Measured on 2 MiB pages (see src/gguf/map.rs): +0.0–0.3 MiB without
/// repacking, +4.8–11.7 MiB with; after a prompt +1.6–3.9 and +6.4–13.3 MiB (with the 2 MiB
/// pages at the edges left huge, a prompt brought +59.6 MiB back; kept, the copies would add
/// +54 MiB). The bound is a quarter of the repacked bytes.
#[test]
fn repacking_gives_back_the_mapped_pages_it_replaces() {
    if common::rerun_alone("repack::repacking_gives_back_the_mapped_pages_it_replaces") {
        return;
    }
    check(OpenOptions::default());
}

/// Read into anonymous memory (`--no-mmap`), the released ranges get the file mapped back over
/// them: the same bound, and a second session repacks from them again to the same logits.
#[test]
fn no_mmap_repacking_gives_back_the_memory_it_replaces() {
    if common::rerun_alone("repack::no_mmap_repacking_gives_back_the_memory_it_replaces") {
        return;
    }
    check(OpenOptions {
        mmap: false,
        ..OpenOptions::default()
    });
}

fn check(opts: OpenOptions) {
    let _one_at_a_time = common::exclusive();
    let model =
        Model::load_with(common::requantized_model("gemma-3-270m-q4_0.gguf"), opts).unwrap();
    let prompt = model
        .tokenizer()
        .encode("The capital of France is", true, true)
        .unwrap();

    let before = rss();
    let mut plain = Session::new(&model, params(Repack::Off)).unwrap();
    let plain_growth = rss().saturating_sub(before);
    plain.eval(&prompt).unwrap();
    let plain_eval_growth = rss().saturating_sub(before);
    let want = plain.logits().to_vec();
    drop(plain);

    let (before, peak_before) = (rss(), peak_rss());
    let mut s = Session::new(&model, params(Repack::All)).unwrap();
    let growth = rss().saturating_sub(before);
    // Each matrix's pages go right after its copy is made: the peak too stays put.
    let peak_growth = peak_rss().saturating_sub(peak_before.max(before));
    let (n, bytes) = s.repacked();
    eprintln!(
        "repacked {n} matrices, {:.1} MiB; RSS grew by {:.1} MiB, its peak by {:.1} MiB \
         (without repacking: {:.1} MiB)",
        bytes as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        peak_growth as f64 / 1048576.0,
        plain_growth as f64 / 1048576.0
    );
    if !common::repacks_q4() {
        return;
    }
    assert_eq!(n, 18 * 7, "every layer's 7 matrices repack");
    assert!(
        growth < plain_growth + bytes / 4,
        "RSS grew by {growth} bytes for {bytes} repacked: the mapped pages were not released"
    );
    assert!(
        peak_growth < plain_growth + bytes / 4,
        "peak RSS grew by {peak_growth} bytes for {bytes} repacked: pages released too late"
    );

    // The released pages are not needed any more, and the repacked weights compute the same
    // next token (the logits differ only by the kernels' summation order: tolerance as in
    // real_model_greedy.rs between equally valid kernels).
    s.eval(&prompt).unwrap();
    // Computing touches the tensors beside each released range (norms, the embedding rows):
    // on huge pages that would bring a whole 2 MiB page back with them.
    let eval_growth = rss().saturating_sub(before);
    eprintln!(
        "after a prompt: RSS grew by {:.1} MiB (without repacking: {:.1} MiB)",
        eval_growth as f64 / 1048576.0,
        plain_eval_growth as f64 / 1048576.0
    );
    assert!(
        eval_growth < plain_eval_growth + bytes / 4,
        "RSS grew by {eval_growth} bytes after a prompt, for {bytes} repacked: released pages came back"
    );
    let got = s.logits();
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    assert_eq!(argmax(got), argmax(&want));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 2.5, "logits moved by {worst}");

    // The released bytes read the same: a second session repacks them again, bit for bit.
    let got = got.to_vec();
    drop(s);
    let mut again = Session::new(&model, params(Repack::All)).unwrap();
    again.eval(&prompt).unwrap();
    assert!(again.logits() == got.as_slice(), "a second repack differs");
}

/// The default ([`Repack::Auto`]) leaves K-quants in the map (a repacked copy for prompts
/// did not pay for its memory: the README's paired rounds): on the Q4_K_M files (the tiny ones
/// and the real one) it repacks no K-quant matrix, and its logits equal `--no-repack`'s bit
/// for bit, for a batch and for a single token.
#[test]
fn auto_leaves_k_quants_in_the_map() {
    let _one_at_a_time = common::exclusive();
    // The embedding model's Q4_K_M has no logits to compare (embedding.rs checks it).
    let mut paths: Vec<_> = common::tiny_models("logits.json", 25)
        .into_iter()
        .filter(|p| p.to_str().unwrap().ends_with("q4_k_m.gguf"))
        .collect();
    assert_eq!(paths.len(), 5);
    paths.push(common::real_model());
    for path in paths {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let model = Model::load(&path).unwrap();
        let tokens: Vec<u32> = (1..=24).collect();
        let session = |repack| {
            let p = SessionParams {
                n_threads: 1,
                ..params(repack)
            };
            Session::new(&model, p).unwrap()
        };
        let (mut auto, mut off, all) = (
            session(Repack::Auto),
            session(Repack::Off),
            session(Repack::All),
        );
        eprintln!(
            "{name}: auto {:?}, all {:?}",
            auto.repacked(),
            all.repacked()
        );
        if common::repacks_q4() {
            assert!(all.repacked().0 > 0, "{name}: --repack repacked nothing");
        }
        for s in [&mut auto, &mut off] {
            s.eval_all(&tokens).unwrap();
        }
        assert!(auto.logits() == off.logits(), "{name}: a batch's logits");
        for s in [&mut auto, &mut off] {
            s.clear();
            s.eval(&tokens[..1]).unwrap();
        }
        assert!(
            auto.logits() == off.logits(),
            "{name}: a single token's logits"
        );
    }
}
