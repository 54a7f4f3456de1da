//! Model files that are valid GGUF but not a runnable model: each gives a clear error naming
//! the tensor or key, from the library and as a non-zero exit from the command line.

use crate::common;

use crate::rewrite::{retyped, rewrite, same, variant, with_key};
use gemlet::ggml::Type;
use gemlet::gguf::Value;
use gemlet::model::Model;
use std::path::{Path, PathBuf};
use std::process::Command;

fn load_error(path: &Path) -> String {
    let e = Model::load(path)
        .err()
        .expect("a bad model was accepted")
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
        .args(["generate", "-n", "1", "-p", "hi", "-m"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code for {}",
        path.display()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && !stderr.contains("panicked"),
        "{stderr}"
    );
    e
}

#[test]
fn bad_models_are_clear_errors() {
    let dir = common::scratch("bad-models");

    let resized = |tensor: &'static str, dims: fn(&[u64]) -> Vec<u64>| {
        move |n: &str, d: &[u64]| Some(if n == tensor { dims(d) } else { d.to_vec() })
    };
    let cases: [(PathBuf, &[&str]); 5] = [
        (
            variant(&dir, "missing", |n, d| {
                (n != "blk.3.ffn_up.weight").then(|| d.to_vec())
            }),
            &["'blk.3.ffn_up.weight'", "missing"],
        ),
        (
            variant(
                &dir,
                "shape",
                resized("blk.1.attn_k.weight", |d| vec![d[0], d[1] * 2]),
            ),
            &["'blk.1.attn_k.weight'", "[64, 64]", "[64, 32]"],
        ),
        (
            with_key(&dir, "general.architecture", Value::string("mamba")),
            &["'mamba'", "gemma, gemma2, gemma3"],
        ),
        (
            with_key(&dir, "gemma3.attention.head_count_kv", Value::U32(3)),
            &["4 query heads", "3 key/value heads"],
        ),
        (
            variant(
                &dir,
                "vocab",
                resized("token_embd.weight", |d| vec![d[0], d[1] - 1]),
            ),
            &["512 tokens", "511 rows"],
        ),
    ];
    for (p, needles) in cases {
        let e = load_error(&p);
        for n in needles {
            assert!(e.contains(n), "{}: {e} does not say {n}", p.display());
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Weights of types the graph cannot compute crashed the process inside ggml (SIGABRT in its
/// binary ops and get_rows, SIGSEGV on a NULL mul_mat kernel): now they are refused at load,
/// naming the tensor and its type.
#[test]
fn weights_of_types_ggml_cannot_compute_are_refused() {
    let dir = common::scratch("bad-types");
    for (tensor, ty) in [
        ("output_norm.weight", Type::F16),
        ("output_norm.weight", Type::BF16),
        ("output_norm.weight", Type::I32),
        ("token_embd.weight", Type::I8),
        ("blk.0.attn_k.weight", Type::I32),
        ("blk.0.attn_k.weight", Type::F64),
        ("blk.0.attn_k.weight", Type::Q8_1),
    ] {
        let p = retyped(&dir, &format!("{tensor}-{}", ty.name()), tensor, ty, None);
        let e = load_error(&p);
        assert!(
            e.contains(&format!("'{tensor}'")) && e.contains(ty.name()),
            "{tensor} as {ty}: {e}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// NaN in a weight, or a soft-cap of infinity, used to hand NaN logits to the sampler (which
/// panicked, or printed garbage greedily): now the metadata is refused, and non-finite logits
/// stop the run with an error.
#[test]
fn non_finite_numbers_are_errors_not_garbage() {
    let dir = common::scratch("non-finite");
    let nan = f32::NAN.to_le_bytes();
    let p = retyped(
        &dir,
        "nan-norm",
        "output_norm.weight",
        Type::F32,
        Some(&nan),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
        .args(["generate", "-n", "2", "--temp", "0", "-p", "hi", "-m"])
        .arg(&p)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("logit of NaN"), "{stderr}");

    // Non-finite soft-caps and rope values in the metadata: crafted_suite.
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sampling_flags_out_of_range_are_refused_with_the_range() {
    let m = common::fixture("tiny/tiny-gemma3-f32.gguf");
    for (flag, value, range) in [
        ("--min-p", "2", "from 0 to 1"),
        ("--top-p", "-0.5", "from 0 to 1"),
        ("--repeat-penalty", "0", "above 0"),
        ("--repeat-penalty", "nan", "above 0"),
        ("--frequency-penalty", "-inf", "finite"),
        ("--temp", "nan", "a number"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
            .args(["generate", "-n", "2", "-p", "hi", "-m"])
            .arg(&m)
            .arg(format!("{flag}={value}"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(range) && !stderr.contains("panicked"),
            "{flag} {value}: {stderr}"
        );
    }
    // A negative temperature is greedy, as in llama.cpp, and written as such.
    let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
        .args(["generate", "-n", "2", "-p", "hi", "--temp", "-1", "-m"])
        .arg(&m)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every token banned, or min-p above the best token's probability: the sampler still picks
/// a token, never indexes an empty list.
#[test]
fn the_sampler_never_panics() {
    use gemlet::sampling::{Sampler, SamplerParams};
    let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
    for p in [
        SamplerParams::greedy(),
        SamplerParams {
            min_p: 1.0,
            ..SamplerParams::default()
        },
        SamplerParams {
            top_k: 0,
            min_p: 1.0,
            ..SamplerParams::default()
        },
    ] {
        let mut s = Sampler::new(p);
        s.ban(&(0..50).collect::<Vec<u32>>());
        assert!((s.sample(&logits, &[]) as usize) < 50);
        let mut s = Sampler::new(p);
        assert!((s.sample(&logits, &[]) as usize) < 50);
    }
}

/// Counts are checked before they size anything: a block count the file cannot hold (4 billion
/// blocks made `inspect` reserve 64 GB and abort), and a zero count with an empty per-layer
/// array (an index before the zero check) are clear errors.
#[test]
fn counts_the_file_cannot_hold_are_refused_before_use() {
    use gemlet::gguf::ValueType;
    let dir = common::scratch("counts");
    let p = with_key(&dir, "gemma3.block_count", Value::U32(u32::MAX));
    let e = load_error(&p);
    assert!(e.contains("block_count") && e.contains("4294967295"), "{e}");
    let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
        .arg("inspect")
        .arg(&p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("cannot run this file"), "{text}");

    let q = rewrite(
        &dir,
        "empty-heads",
        &[
            ("gemma3.block_count", Value::U32(0)),
            (
                "gemma3.attention.head_count",
                Value::array(ValueType::I32, Vec::new()),
            ),
        ],
        same,
    );
    let e = load_error(&q);
    assert!(e.contains("head_count"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A template that renders the conversation as nothing, on a model that adds no BOS, used to
/// wrap a counter (`reused -= 1`); now it is an error.
#[test]
fn a_template_that_renders_nothing_is_an_error() {
    use gemlet::chat::{Chat, ChatError, ChatTemplate, Overflow};
    use gemlet::sampling::{Sampler, SamplerParams};
    use gemlet::session::{Session, SessionParams};
    let dir = common::scratch("empty-template");
    let p = with_key(&dir, "tokenizer.ggml.add_bos_token", Value::Bool(false));
    let model = Model::load(&p).unwrap();
    let params = SessionParams {
        n_ctx: 64,
        n_threads: 1,
        ..SessionParams::default()
    };
    let template = ChatTemplate::for_model(&model, Some("")).unwrap();
    let mut chat = Chat::new(
        Session::new(&model, params).unwrap(),
        template,
        Overflow::Stop,
    );
    let mut sampler = Sampler::new(SamplerParams::greedy());
    let never = std::sync::atomic::AtomicBool::new(false);
    let e = chat
        .send("hi", &mut sampler, 4, &never, |_| {})
        .unwrap_err();
    assert!(matches!(e, ChatError::EmptyPrompt), "{e}");
    assert!(
        chat.messages().is_empty(),
        "the refused message is not kept"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn perplexity_with_a_context_too_small_says_so() {
    for c in ["0", "1"] {
        let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
            .args(["perplexity", "-c", c, "-f"])
            .arg(common::fixture("text/gpl-3.txt"))
            .arg("-m")
            .arg(common::fixture("tiny/tiny-gemma3-f32.gguf"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "-c {c}: {stderr}");
        assert!(
            stderr.contains("too small") && stderr.contains("-c 2"),
            "-c {c}: {stderr}"
        );
    }
}

#[test]
fn tokenize_jsonl_keeps_the_lines_before_a_bad_one() {
    let (out, err, ok) = common::run_gemlet(
        &[
            "tokenize",
            "--jsonl",
            "-m",
            common::fixture("tiny/tiny-gemma3-f32.gguf")
                .to_str()
                .unwrap(),
        ],
        Some("{\"text\": \"a\"}\n{\"text\": \"b\"}\nnot json\n{\"text\": \"c\"}\n"),
    );
    assert!(!ok);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(err.contains("stdin line 3"), "{err}");
}

/// A chat template runs on a budget: nested loops that ran past a minute (at start-up, when the
/// template was the model's own) stop with an error, and so does one that writes without end.
#[test]
fn runaway_templates_stop_with_an_error() {
    use gemlet::chat::{ChatTemplate, Message, Role, TemplateError};
    let hi = [Message::new(Role::User, "hi")];
    // minijinja refuses a range of 100,000 or more; 99,999 squared is 10^10 iterations.
    let loops = "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}";
    let e = ChatTemplate::jinja(loops, "<bos>", "<eos>")
        .unwrap()
        .render(&hi, true)
        .unwrap_err();
    assert!(matches!(e, TemplateError::Runaway(..)), "{e}");
    assert!(e.to_string().contains("instructions"), "{e}");
    let long = "{% for i in range(10000) %}{% for j in range(1000) %}{{ 'x' * 100 }}{% endfor %}{% endfor %}";
    let e = ChatTemplate::jinja(long, "<bos>", "<eos>")
        .unwrap()
        .render(&hi, true)
        .unwrap_err();
    assert!(e.to_string().contains("bytes of text"), "{e}");

    // As the model's own template: chat ends with the error instead of hanging at start-up.
    let dir = common::scratch("runaway-template");
    let p = with_key(&dir, "tokenizer.chat_template", Value::string(loops));
    let (_, err, ok) = common::run_gemlet(
        &["chat", "-n", "2", "-m", p.to_str().unwrap()],
        Some("hello"),
    );
    assert!(!ok && err.contains("runs without end"), "{err}");

    // A template from a file is named by its path in every error, not as the model's.
    let file = dir.join("broken.jinja");
    std::fs::write(&file, "{% for x in %}").unwrap();
    let (_, err, ok) = common::run_gemlet(
        &[
            "chat",
            "-m",
            common::fixture("tiny/tiny-gemma3-f32.gguf")
                .to_str()
                .unwrap(),
            "--chat-template-file",
            file.to_str().unwrap(),
        ],
        Some("hello"),
    );
    assert!(
        !ok && err.contains("broken.jinja is not a valid template"),
        "{err}"
    );
    assert!(!err.contains("tokenizer.chat_template"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A directory or a FIFO given as the model is refused by what it is (a FIFO used to block
/// `inspect` forever: opening one for reading waits for a writer).
#[test]
fn a_model_path_that_is_not_a_file_is_refused() {
    let dir = common::scratch("not-a-file");
    let fifo = dir.join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    for (path, kind) in [(&dir, "a directory"), (&fifo, "not a regular file")] {
        let (_, err, ok) = common::run_gemlet(&["inspect", path.to_str().unwrap()], None);
        assert!(!ok && err.contains(kind), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// More threads than CPUs starved each other (25 s for 4 tokens with -t 3 on 2 CPUs): -t is
/// capped at the CPUs this process may use, with a warning.
#[test]
fn threads_beyond_the_cpus_are_capped_with_a_warning() {
    let (_, err, ok) = common::run_gemlet(
        &[
            "generate",
            "-t",
            "1000",
            "-n",
            "4",
            "--temp",
            "0",
            "-p",
            "hi",
            "-m",
            common::fixture("tiny/tiny-gemma3-f32.gguf")
                .to_str()
                .unwrap(),
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: -t 1000") && err.contains("CPUs"),
        "{err}"
    );
}

/// 20 MB piped to chat reached 2.4 GB and 13 s before the context error: a message that
/// cannot fit (its bytes over the longest token's) is refused before it is tokenized.
#[test]
fn a_message_far_past_the_context_is_refused_before_tokenizing() {
    let big = "word ".repeat(4 << 20);
    let (_, err, ok) = common::run_gemlet(
        &[
            "chat",
            "-c",
            "256",
            "-m",
            common::fixture("tiny/tiny-gemma3-f32.gguf")
                .to_str()
                .unwrap(),
        ],
        Some(&big),
    );
    assert!(
        !ok && err.contains("at least") && err.contains("raise -c"),
        "{err}"
    );
}

#[test]
fn bench_past_the_model_s_context_is_refused_before_building_tokens() {
    let (_, err, ok) = common::run_gemlet(
        &[
            "bench",
            "-p",
            "100000000",
            "-n",
            "0",
            "-m",
            common::fixture("tiny/tiny-gemma3-f32.gguf")
                .to_str()
                .unwrap(),
        ],
        None,
    );
    assert!(!ok && err.contains("context of 100000000 tokens"), "{err}");
}

/// Negative numbers: `-n -1` is llama.cpp's "until the context ends"; a negative size is an
/// invalid value of its flag (it was "unexpected argument '-5'").
#[test]
fn negative_numbers_are_values() {
    let m = common::fixture("tiny/tiny-gemma3-f32.gguf");
    let m = m.to_str().unwrap();
    let (out, err, ok) = common::run_gemlet(
        &[
            "generate", "-m", m, "-p", "hi", "-n", "-1", "--temp", "0", "-c", "32", "--json",
        ],
        None,
    );
    assert!(ok, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ids"].as_array().unwrap().len() + 2, 32, "{out}");
    let (_, err, ok) = common::run_gemlet(&["generate", "-m", m, "-p", "hi", "-c", "-5"], None);
    assert!(
        !ok && err.contains("invalid value '-5' for '--ctx-size"),
        "{err}"
    );
}

#[test]
fn prompt_past_the_context_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_gemlet"))
        .args(["generate", "-c", "8", "-n", "4", "--temp", "0", "-p"])
        .arg("one two three four five six seven eight nine ten")
        .arg("-m")
        .arg(common::fixture("tiny/tiny-gemma3-f32.gguf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("do not fit in the context") && stderr.contains("-c"),
        "{stderr}"
    );
}
