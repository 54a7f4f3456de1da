//! How a model is brought into memory and whether it is let start: `--no-mmap`, `--mlock`, the
//! memory plan's refusal and `--force`, and `gemlet bench`'s output forms, on a tiny model
//! through the command line.

use crate::common;

use gemlet::gguf::{Gguf, OpenOptions};
use std::process::Command;

fn tiny() -> String {
    common::fixture("tiny/tiny-gemma3-q8_0.gguf")
        .to_str()
        .unwrap()
        .to_string()
}

fn ids(out: &str) -> Vec<u64> {
    let j: serde_json::Value = serde_json::from_str(out).unwrap();
    j["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn generate(extra: &[&str]) -> (String, String, bool) {
    let m = tiny();
    let mut args = vec![
        "generate",
        "-m",
        &m,
        "-p",
        "hello world",
        "-n",
        "12",
        "--temp",
        "0",
        "--json",
        "-t",
        "1",
    ];
    args.extend_from_slice(extra);
    common::run_gemlet(&args, None)
}

#[test]
fn no_mmap_mlock_and_no_warmup_give_the_same_tokens() {
    let (mapped, e, ok) = generate(&[]);
    assert!(ok, "{e}");
    for flags in [
        &["--no-mmap"][..],
        &["--mlock"],
        &["--no-mmap", "--mlock"],
        &["--no-warmup"],
    ] {
        let (out, e, ok) = generate(flags);
        assert!(ok, "{flags:?}: {e}");
        assert_eq!(ids(&out), ids(&mapped), "{flags:?}");
    }
}

/// `--mlock` really locks: this process's locked memory grows by the file's pages, and shrinks
/// back when the model is dropped.
#[test]
fn mlock_locks_the_file_s_pages() {
    if common::rerun_alone("load_options::mlock_locks_the_file_s_pages") {
        return;
    }
    let vm_lck = || {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmLck is in /proc/self/status")
            * 1024
    };
    let path = tiny();
    let len = std::fs::metadata(&path).unwrap().len();
    let before = vm_lck();
    let opts = OpenOptions {
        mlock: true,
        ..OpenOptions::default()
    };
    for mmap in [true, false] {
        let g = Gguf::open_with(&path, OpenOptions { mmap, ..opts }).unwrap();
        let locked = vm_lck() - before;
        assert!(
            locked >= len / 4096 * 4096,
            "mmap {mmap}: {locked} of {len} bytes locked"
        );
        drop(g);
        assert_eq!(vm_lck(), before, "mmap {mmap}: still locked after drop");
    }
}

#[test]
fn a_session_that_will_not_fit_is_refused_unless_forced() {
    let m = tiny();
    let run = |force: bool| {
        let mut args = vec![
            "generate",
            "-m",
            m.as_str(),
            "-p",
            "hi",
            "-n",
            "2",
            "-t",
            "1",
        ];
        if force {
            args.push("--force");
        }
        Command::new(env!("CARGO_BIN_EXE_gemlet"))
            .args(&args)
            .env("GEMLET_MEMORY_LIMIT", "1M")
            .output()
            .unwrap()
    };
    let o = run(false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not enough memory")
            && err.contains("KV cache")
            && err.contains("1.0 MiB is available")
            && err.contains("--force"),
        "{err}"
    );
    let o = run(true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bench_prints_llama_bench_s_table_and_json() {
    let m = tiny();
    let (out, e, ok) = common::run_gemlet(
        &[
            "bench", "-m", &m, "-p", "16", "-n", "4", "-r", "2", "-t", "1",
        ],
        None,
    );
    assert!(ok, "{e}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("| model ") && lines[0].ends_with(" t/s |"),
        "{out}"
    );
    assert!(
        lines[2].contains("pp16") && lines[3].contains("tg4"),
        "{out}"
    );
    assert!(lines[2].contains(" ± "), "{out}");

    let (out, e, ok) = common::run_gemlet(
        &[
            "bench", "-m", &m, "-p", "16", "-n", "4", "-r", "3", "-t", "1", "-o", "json", "-ctk",
            "q8_0", "-fa", "1",
        ],
        None,
    );
    assert!(ok, "{e}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (r, (n_prompt, n_gen)) in rows.iter().zip([(16, 0), (0, 4)]) {
        assert_eq!(r["n_prompt"], n_prompt);
        assert_eq!(r["n_gen"], n_gen);
        assert_eq!(r["n_threads"], 1);
        assert_eq!(r["type_k"], "q8_0");
        assert_eq!(r["flash_attn"], 1);
        assert_eq!(r["model_filename"], m.as_str());
        let samples = r["samples_ts"].as_array().unwrap();
        assert_eq!(samples.len(), 3);
        // avg_ts is the mean of the samples, as llama-bench computes it.
        let mean = samples.iter().map(|v| v.as_f64().unwrap()).sum::<f64>() / 3.0;
        assert!((r["avg_ts"].as_f64().unwrap() - mean).abs() < 1e-6 * mean);
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
    }
}
