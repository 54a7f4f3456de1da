//! Model files that are valid GGUF but not a runnable model: each gives a clear error naming
//! the tensor or key, from the library and as a non-zero exit from the command line.

use crate::common;

use gemlet::gguf::{Gguf, GgufWriter, Value};
use gemlet::model::Model;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rewrites the tiny gemma3 model with `edit_kv` applied to its metadata and `edit_tensor`
/// deciding each tensor's fate (None drops it; Some(dims) keeps it with those dims).
fn variant(
    dir: &Path,
    name: &str,
    edit_kv: impl Fn(&str, Value<'static>) -> Value<'static>,
    edit_tensor: impl Fn(&str, &[u64]) -> Option<Vec<u64>>,
) -> PathBuf {
    let src = Gguf::open(common::fixture("tiny/tiny-gemma3-f32.gguf")).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata() {
        let owned = owned(v);
        w.set(k, edit_kv(k, owned));
    }
    let mut data = Vec::new();
    for t in src.tensors() {
        if let Some(dims) = edit_tensor(&t.name, &t.dims) {
            w.add_tensor(&t.name, t.ty, &dims).unwrap();
            let n: u64 = dims.iter().product::<u64>() * 4;
            let mut bytes = src.tensor_data(t).to_vec();
            bytes.resize(n as usize, 0);
            data.push(bytes);
        }
    }
    let path = dir.join(format!("{name}.gguf"));
    let mut tw = w.create(&path).unwrap();
    for d in &data {
        tw.write_tensor(d).unwrap();
    }
    tw.finish().unwrap();
    path
}

fn owned(v: Value<'_>) -> Value<'static> {
    match v {
        Value::String(s) => Value::String(s.into_owned().into()),
        Value::Array(a) => Value::array(a.elem_type(), a.iter().map(owned).collect()),
        Value::U8(x) => Value::U8(x),
        Value::I8(x) => Value::I8(x),
        Value::U16(x) => Value::U16(x),
        Value::I16(x) => Value::I16(x),
        Value::U32(x) => Value::U32(x),
        Value::I32(x) => Value::I32(x),
        Value::U64(x) => Value::U64(x),
        Value::I64(x) => Value::I64(x),
        Value::F32(x) => Value::F32(x),
        Value::F64(x) => Value::F64(x),
        Value::Bool(x) => Value::Bool(x),
    }
}

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
    let keep = |_: &str, d: &[u64]| Some(d.to_vec());
    let same = |_: &str, v: Value<'static>| v;

    let p = variant(&dir, "missing", same, |n, d| {
        (n != "blk.3.ffn_up.weight").then(|| d.to_vec())
    });
    let e = load_error(&p);
    assert!(
        e.contains("'blk.3.ffn_up.weight'") && e.contains("missing"),
        "{e}"
    );

    let p = variant(&dir, "shape", same, |n, d| {
        Some(if n == "blk.1.attn_k.weight" {
            vec![d[0], d[1] * 2]
        } else {
            d.to_vec()
        })
    });
    let e = load_error(&p);
    assert!(
        e.contains("'blk.1.attn_k.weight'") && e.contains("[64, 64]") && e.contains("[64, 32]"),
        "{e}"
    );

    let p = variant(
        &dir,
        "arch",
        |k, v| {
            if k == "general.architecture" {
                Value::string("mamba")
            } else {
                v
            }
        },
        keep,
    );
    let e = load_error(&p);
    assert!(
        e.contains("'mamba'") && e.contains("gemma, gemma2, gemma3"),
        "{e}"
    );

    let p = variant(
        &dir,
        "heads",
        |k, v| {
            if k == "gemma3.attention.head_count_kv" {
                Value::U32(3)
            } else {
                v
            }
        },
        keep,
    );
    let e = load_error(&p);
    assert!(
        e.contains("4 query heads") && e.contains("3 key/value heads"),
        "{e}"
    );

    let p = variant(&dir, "vocab", same, |n, d| {
        Some(if n == "token_embd.weight" {
            vec![d[0], d[1] - 1]
        } else {
            d.to_vec()
        })
    });
    let e = load_error(&p);
    assert!(e.contains("512 tokens") && e.contains("511 rows"), "{e}");

    std::fs::remove_dir_all(&dir).unwrap();
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
