//! Every crafted file, run as a user runs it: the format's corruptions (counts, lengths,
//! offsets, types, dims, values of every kind), models that are valid GGUF but not runnable
//! (keys missing, of the wrong type or out of range, tensors missing, misshapen or of types the
//! graph cannot compute, weights that are NaN), vocabularies and chat templates. Each file is
//! made here (from the tiny fixture or byte by byte), never committed.
//!
//! Each must end with exit code 1 and an error that names the key or tensor, never a signal or
//! a panic, within bounds that only a hang or a runaway allocation could break. The results go
//! to a table (case, command, message, peak RSS, time) in `$CARGO_TARGET_TMPDIR`, printed with
//! `--nocapture`.

use crate::common;
use crate::gguf_crafted::{file, kv_str, tensor, valid, Raw};
use crate::rewrite::{retyped, rewrite, rewrite_from, same, variant, with_key};
use gemlet::ggml::Type;
use gemlet::gguf::Value;
use std::path::{Path, PathBuf};

/// Far above any case's need (the tiny model runs in ~30 MB), far below what the runaway
/// allocations took before they were checked (4.3 GB for `block_count = 0xFFFFFFFF`).
const MAX_RSS: u64 = 256 << 20;
/// Every case ends in well under a second; before, a runaway template ran for minutes.
const MAX_SECS: f64 = 30.0;

/// How a case is run.
#[derive(Clone, Copy)]
enum Run {
    /// `gemlet inspect FILE`
    Inspect,
    /// `gemlet generate -m FILE -n 2 -p hi --temp 0`
    Generate,
    /// `gemlet chat -m FILE -n 2`, "hello" on stdin
    Chat,
}

struct Case {
    name: String,
    path: PathBuf,
    run: Run,
    /// What the message must say (the key or tensor, and what is wrong).
    needles: Vec<&'static str>,
}

fn case(name: &str, path: PathBuf, run: Run, needles: &[&'static str]) -> Case {
    Case {
        name: name.into(),
        path,
        run,
        needles: needles.to_vec(),
    }
}

/// The format's corruptions, byte by byte, each run through `inspect`.
fn format_cases(dir: &Path) -> Vec<Case> {
    let put = |name: &str, bytes: Vec<u8>| {
        let p = dir.join(format!("{name}.gguf"));
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut bad_magic = valid();
    bad_magic[3] = b'X';
    let mut version = valid();
    version[4..8].copy_from_slice(&4u32.to_le_bytes());
    let mut tensor_count = valid();
    tensor_count[8..16].copy_from_slice(&(1u64 << 63).to_le_bytes());
    let mut kv_count = valid();
    kv_count[16..24].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let mut deep = Raw::new().str(b"deep").u32(9);
    for _ in 0..100 {
        deep = deep.u32(9).u64(1);
    }
    let deep = deep.u32(4).u64(1).u32(7);
    let cases: Vec<(&str, Vec<u8>, &[&'static str])> = vec![
        ("empty file", vec![], &["truncated"]),
        ("bad magic", bad_magic, &["magic"]),
        ("version 4", version, &["version 4"]),
        ("cut in the header", valid()[..30].to_vec(), &["truncated"]),
        (
            "cut in the data",
            valid()[..valid().len() - 8].to_vec(),
            &["'b'", "truncated"],
        ),
        ("tensor count 2^63", tensor_count, &["tensor count"]),
        ("key count 2^62", kv_count, &["metadata key count"]),
        (
            "key length 2^40",
            file(3, &[Raw::new().u64(1 << 40).bytes(b"general.name")], &[], 0),
            &["metadata key #0", "truncated"],
        ),
        (
            "string value length 2^64-4",
            file(
                3,
                &[Raw::new().str(b"general.name").u32(8).u64(u64::MAX - 3)],
                &[],
                0,
            ),
            &["general.name", "truncated"],
        ),
        (
            "array of 2^62 u32",
            file(
                3,
                &[Raw::new()
                    .str(b"tokenizer.ggml.scores")
                    .u32(9)
                    .u32(4)
                    .u64(1 << 62)],
                &[],
                0,
            ),
            &["tokenizer.ggml.scores", "array"],
        ),
        (
            "arrays nested 100 deep",
            file(3, &[deep], &[], 0),
            &["'deep'", "nested"],
        ),
        (
            "value type 13",
            file(3, &[Raw::new().str(b"weird").u32(13).u32(0)], &[], 0),
            &["'weird'", "13"],
        ),
        (
            "bool 2",
            file(3, &[Raw::new().str(b"flag").u32(7).bytes(&[2])], &[], 0),
            &["'flag'", "neither 0 nor 1"],
        ),
        (
            "key not UTF-8",
            file(3, &[Raw::new().str(b"general.\xc3").u32(4).u32(1)], &[], 0),
            &["metadata key #0", "UTF-8"],
        ),
        (
            "string value not UTF-8",
            file(
                3,
                &[Raw::new().str(b"general.name").u32(8).str(b"\xe2\x82")],
                &[],
                0,
            ),
            &["general.name", "UTF-8"],
        ),
        (
            "alignment 3",
            file(
                3,
                &[Raw::new().str(b"general.alignment").u32(4).u32(3)],
                &[],
                0,
            ),
            &["general.alignment"],
        ),
        (
            "alignment 0",
            file(
                3,
                &[Raw::new().str(b"general.alignment").u32(4).u32(0)],
                &[],
                0,
            ),
            &["general.alignment"],
        ),
        (
            "tensor offset overflows",
            file(3, &[], &[tensor("w", &[8], 0, u64::MAX - 31)], 32),
            &["'w'", "overflow"],
        ),
        (
            "tensor past the end",
            file(3, &[], &[tensor("w", &[8], 0, 1 << 20)], 32),
            &["'w'", "truncated"],
        ),
        (
            "tensor misaligned",
            file(3, &[], &[tensor("w", &[8], 0, 4)], 64),
            &["'w'", "alignment"],
        ),
        (
            "tensors overlap",
            file(
                3,
                &[],
                &[tensor("a", &[8], 0, 0), tensor("b", &[8], 0, 0)],
                64,
            ),
            &["overlaps"],
        ),
        (
            "tensor with 5 dims",
            file(3, &[], &[tensor("w", &[1, 1, 1, 1, 1], 0, 0)], 32),
            &["'w'"],
        ),
        (
            "tensor of 2^64 elements",
            file(3, &[], &[tensor("w", &[1 << 32, 1 << 32], 0, 0)], 32),
            &["'w'", "overflow"],
        ),
        (
            "tensor of type 99",
            file(3, &[], &[tensor("w", &[8], 99, 0)], 32),
            &["'w'", "99"],
        ),
        (
            "Q4_K row of 64",
            file(3, &[], &[tensor("w", &[64], 12, 0)], 1024),
            &["'w'", "block size 256"],
        ),
        (
            "tensor named twice",
            file(
                3,
                &[],
                &[tensor("w", &[8], 0, 0), tensor("w", &[8], 0, 32)],
                64,
            ),
            &["'w'", "twice"],
        ),
    ];
    let mut cases: Vec<Case> = cases
        .into_iter()
        .map(|(name, bytes, needles)| case(name, put(&slug(name), bytes), Run::Inspect, needles))
        .collect();
    // `inspect` shows any GGUF; running it needs a model.
    let not_a_model = put(
        "not-a-model",
        file(3, &[kv_str("general.name", "x")], &[], 0),
    );
    cases.push(case(
        "not a model",
        not_a_model,
        Run::Generate,
        &["general.architecture"],
    ));
    cases
}

/// Files that are not files, run through `inspect`.
fn special_files(dir: &Path) -> Vec<Case> {
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    vec![
        case(
            "a directory",
            dir.to_path_buf(),
            Run::Inspect,
            &["is a directory"],
        ),
        case("a FIFO", fifo, Run::Inspect, &["not a regular file"]),
        case(
            "/dev/zero",
            "/dev/zero".into(),
            Run::Inspect,
            &["not a regular file"],
        ),
        case(
            "missing file",
            dir.join("nothing.gguf"),
            Run::Inspect,
            &["nothing.gguf"],
        ),
    ]
}

/// The tiny model with one key or tensor made wrong, each run through `generate`.
fn model_cases(dir: &Path) -> Vec<Case> {
    let key =
        |name: &str, key: &str, v: Value<'static>| rewrite(dir, &slug(name), &[(key, v)], same);
    let without = |name: &str, key: &str| {
        rewrite_from("tiny-gemma3-f32", dir, &slug(name), &[key], &[], same)
    };
    let gemma2 = |name: &str, key: &str, v: Value<'static>| {
        rewrite_from("tiny-gemma2-f32", dir, &slug(name), &[], &[(key, v)], same)
    };
    let g = Run::Generate;
    let mut cases = vec![
        case(
            "architecture mamba",
            with_key(dir, "general.architecture", Value::string("mamba")),
            g,
            &["'mamba'"],
        ),
        case(
            "no architecture",
            without("no architecture", "general.architecture"),
            g,
            &["general.architecture"],
        ),
        case(
            "no block_count",
            without("no block_count", "gemma3.block_count"),
            g,
            &["gemma3.block_count"],
        ),
        case(
            "block_count 0",
            key("block_count 0", "gemma3.block_count", Value::U32(0)),
            g,
            &["gemma3.block_count"],
        ),
        case(
            "block_count 2^32-1",
            key(
                "block_count max",
                "gemma3.block_count",
                Value::U32(u32::MAX),
            ),
            g,
            &["gemma3.block_count"],
        ),
        case(
            "block_count a string",
            key(
                "block_count string",
                "gemma3.block_count",
                Value::string("7"),
            ),
            g,
            &["gemma3.block_count"],
        ),
        case(
            "block_count -1 (i64)",
            key("block_count i64", "gemma3.block_count", Value::I64(-1)),
            g,
            &["gemma3.block_count"],
        ),
        case(
            "embedding_length 0",
            key("embedding 0", "gemma3.embedding_length", Value::U32(0)),
            g,
            &["embedding_length"],
        ),
        case(
            "head_count 0",
            key("heads 0", "gemma3.attention.head_count", Value::U32(0)),
            g,
            &["head_count"],
        ),
        case(
            "head_count empty array",
            key(
                "heads empty",
                "gemma3.attention.head_count",
                Value::array(gemlet::gguf::ValueType::U32, vec![]),
            ),
            g,
            &["head_count"],
        ),
        case(
            "head_count_kv 3 of 4",
            key(
                "kv heads 3",
                "gemma3.attention.head_count_kv",
                Value::U32(3),
            ),
            g,
            &["3 key/value heads"],
        ),
        case(
            "key_length 0",
            key("key_length 0", "gemma3.attention.key_length", Value::U32(0)),
            g,
            &["key_length"],
        ),
        case(
            "context_length 0",
            key("context 0", "gemma3.context_length", Value::U32(0)),
            g,
            &["context_length"],
        ),
        case(
            "rms epsilon NaN",
            key(
                "eps nan",
                "gemma3.attention.layer_norm_rms_epsilon",
                Value::F32(f32::NAN),
            ),
            g,
            &["layer_norm_rms_epsilon"],
        ),
        case(
            "rope.freq_base inf",
            key(
                "rope inf",
                "gemma3.rope.freq_base",
                Value::F32(f32::INFINITY),
            ),
            g,
            &["rope.freq_base"],
        ),
        case(
            "rope.scaling.factor NaN",
            key(
                "scale nan",
                "gemma3.rope.scaling.factor",
                Value::F32(f32::NAN),
            ),
            g,
            &["rope.scaling.factor"],
        ),
        case(
            "rope.scaling.factor -1",
            key("scale neg", "gemma3.rope.scaling.factor", Value::F32(-1.0)),
            g,
            &["rope.scaling.factor"],
        ),
        case(
            "final_logit_softcapping inf",
            key(
                "final cap inf",
                "gemma3.final_logit_softcapping",
                Value::F32(f32::INFINITY),
            ),
            g,
            &["final_logit_softcapping"],
        ),
        case(
            "attn_logit_softcapping 0",
            gemma2(
                "attn cap 0",
                "gemma2.attn_logit_softcapping",
                Value::F32(0.0),
            ),
            g,
            &["attn_logit_softcapping"],
        ),
        case(
            "tensor missing",
            variant(dir, "missing", |n, d| {
                (n != "blk.3.ffn_up.weight").then(|| d.to_vec())
            }),
            g,
            &["'blk.3.ffn_up.weight'", "missing"],
        ),
        case(
            "tensor misshapen",
            variant(dir, "misshapen", |n, d| {
                Some(if n == "blk.1.attn_k.weight" {
                    vec![d[0], d[1] * 2]
                } else {
                    d.to_vec()
                })
            }),
            g,
            &["'blk.1.attn_k.weight'"],
        ),
        case(
            "vocabulary and embedding disagree",
            variant(dir, "vocab", |n, d| {
                Some(if n == "token_embd.weight" {
                    vec![d[0], d[1] - 1]
                } else {
                    d.to_vec()
                })
            }),
            g,
            &["512 tokens", "511 rows"],
        ),
        case(
            "NaN weights",
            retyped(
                dir,
                "nan-norm",
                "output_norm.weight",
                Type::F32,
                Some(&f32::NAN.to_le_bytes()),
            ),
            g,
            &["logit of NaN"],
        ),
        case(
            "tokenizer model gpt2",
            key("tok gpt2", "tokenizer.ggml.model", Value::string("gpt2")),
            g,
            &["'gpt2'"],
        ),
        case(
            "tokens not strings",
            key(
                "tokens ints",
                "tokenizer.ggml.tokens",
                Value::array(gemlet::gguf::ValueType::U32, vec![Value::U32(1)]),
            ),
            g,
            &["tokenizer.ggml.tokens"],
        ),
        case(
            "scores of another length",
            key(
                "scores short",
                "tokenizer.ggml.scores",
                Value::f32s([0.0; 3]),
            ),
            g,
            &["3 scores"],
        ),
        case(
            "token type 99",
            key(
                "type 99",
                "tokenizer.ggml.token_type",
                Value::i32s((0..512).map(|i| if i == 7 { 99 } else { 1 })),
            ),
            g,
            &["type 99"],
        ),
        case(
            "bos id past the vocabulary",
            key(
                "bos far",
                "tokenizer.ggml.bos_token_id",
                Value::U32(100_000),
            ),
            g,
            &["tokenizer.ggml.bos_token_id"],
        ),
    ];
    // Gemma 4's experts and per-kind head counts, on the tiny MoE model.
    let moe = |name: &str, drop: &[&str], set: &[(&str, Value<'static>)]| {
        rewrite_from("tiny-gemma4-moe-f32", dir, &slug(name), drop, set, same)
    };
    let no_tensor = |name: &str, tensor: &'static str| {
        rewrite_from("tiny-gemma4-moe-f32", dir, &slug(name), &[], &[], |t, b| {
            (t.name != tensor).then(|| same(t, b)).flatten()
        })
    };
    cases.extend([
        case(
            "experts: no expert_count",
            moe("moe no count", &["gemma4.expert_count"], &[]),
            g,
            &["gemma4.expert_count"],
        ),
        case(
            "experts: expert_count 0",
            moe(
                "moe count 0",
                &[],
                &[("gemma4.expert_count", Value::U32(0))],
            ),
            g,
            &["gemma4.expert_count"],
        ),
        case(
            "experts: 5 of 4 used",
            moe(
                "moe used 5",
                &[],
                &[("gemma4.expert_used_count", Value::U32(5))],
            ),
            g,
            &["gemma4.expert_used_count"],
        ),
        case(
            "experts: expert_count 2^32-1",
            moe(
                "moe count max",
                &[],
                &[("gemma4.expert_count", Value::U32(u32::MAX))],
            ),
            g,
            &["gemma4.expert_count"],
        ),
        case(
            "experts: count disagrees with the router",
            moe(
                "moe count 8",
                &[],
                &[("gemma4.expert_count", Value::U32(8))],
            ),
            g,
            &["blk.0.ffn_gate_up_exps.weight", "[64, 64, 8]"],
        ),
        case(
            "experts: no ffn_down_exps",
            no_tensor("moe no down", "blk.1.ffn_down_exps.weight"),
            g,
            &["blk.1.ffn_down_exps.weight"],
        ),
        case(
            "head_count_kv differs within a kind",
            moe(
                "kv heads mixed",
                &[],
                &[(
                    "gemma4.attention.head_count_kv",
                    Value::array(
                        gemlet::gguf::ValueType::U32,
                        [2, 1, 1, 1].map(Value::U32).to_vec(),
                    ),
                )],
            ),
            g,
            &["gemma4.attention.head_count_kv"],
        ),
    ]);
    for (tensor, ty) in [
        ("output_norm.weight", Type::F16),
        ("output_norm.weight", Type::I32),
        ("token_embd.weight", Type::I8),
        ("blk.0.attn_k.weight", Type::F64),
        ("blk.0.attn_k.weight", Type::Q8_1),
    ] {
        let name = format!("{tensor} as {}", ty.name());
        let path = retyped(dir, &slug(&name), tensor, ty, None);
        let needle: &'static str = Box::leak(format!("'{tensor}'").into_boxed_str());
        cases.push(case(&name, path, g, &[needle, ty.name()]));
    }
    cases
}

/// Chat templates from the file that are wrong or never end, run through `chat`.
fn template_cases(dir: &Path) -> Vec<Case> {
    let template = |name: &str, t: &str| {
        rewrite(
            dir,
            &slug(name),
            &[("tokenizer.chat_template", Value::string(t.to_string()))],
            same,
        )
    };
    let c = Run::Chat;
    vec![
        case("template syntax error", template("tpl syntax", "{% for x in %}"), c, &["tokenizer.chat_template"]),
        case("template loops 10^10 times", template("tpl loops", "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"), c, &["runs without end"]),
        case("template writes 1 GB", template("tpl long", "{% for i in range(10000) %}{% for j in range(1000) %}{{ 'x' * 100 }}{% endfor %}{% endfor %}"), c, &["bytes of text"]),
        case(
            "template renders nothing, no BOS",
            rewrite(
                dir,
                "tpl-empty",
                &[
                    ("tokenizer.chat_template", Value::string("{% if false %}x{% endif %}")),
                    ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
                ],
                same,
            ),
            c,
            &["chat template"],
        ),
    ]
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[test]
fn every_crafted_file_is_a_clear_error_in_bounded_time_and_memory() {
    let dir = common::scratch("crafted-suite");
    let mut cases = format_cases(&dir);
    cases.extend(special_files(&dir));
    cases.extend(model_cases(&dir));
    cases.extend(template_cases(&dir));
    let stdin = dir.join("stdin.txt");
    std::fs::write(&stdin, "hello\n").unwrap();

    let mut table = String::from(
        "| case | command | exit | message | peak RSS | time |\n|---|---|---|---|---:|---:|\n",
    );
    let mut failures = Vec::new();
    for c in &cases {
        let file = c.path.to_str().unwrap();
        let (args, input): (Vec<&str>, _) = match c.run {
            Run::Inspect => (vec!["inspect", file], None),
            Run::Generate => (
                vec!["generate", "-n", "2", "--temp", "0", "-p", "hi", "-m", file],
                None,
            ),
            Run::Chat => (vec!["chat", "-n", "2", "-m", file], Some(stdin.as_path())),
        };
        let m = common::run_measured(&args, input);
        let message = m.stderr.trim().replace('\n', " / ");
        let exit = match (m.code, m.signal) {
            (Some(code), _) => code.to_string(),
            (None, s) => format!("signal {}", s.unwrap_or(0)),
        };
        table.push_str(&format!(
            "| {} | {} | {exit} | {} | {:.0} MB | {:.2} s |\n",
            c.name,
            args[0],
            message.replace('|', "\\|"),
            m.max_rss as f64 / (1 << 20) as f64,
            m.secs
        ));
        let mut wrong = Vec::new();
        if m.code != Some(1) {
            wrong.push(format!("exit {exit}"));
        }
        if !m.stderr.starts_with("error: ") || m.stderr.contains("panicked") {
            wrong.push("not one clear error".into());
        }
        for n in &c.needles {
            if !m.stderr.contains(n) {
                wrong.push(format!("does not say {n:?}"));
            }
        }
        if m.max_rss > MAX_RSS {
            wrong.push(format!("peak RSS {} MB", m.max_rss >> 20));
        }
        if m.secs > MAX_SECS {
            wrong.push(format!("{:.1} s", m.secs));
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}: {message}", c.name, wrong.join(", ")));
        }
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("crafted-suite.md");
    std::fs::write(&out, &table).unwrap();
    println!("{table}\n(written to {})", out.display());
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 60, "{} cases", cases.len());
    std::fs::remove_dir_all(&dir).unwrap();
}
