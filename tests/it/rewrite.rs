//! The tiny gemma3 model rewritten: metadata set, tensors retyped, resized or dropped. The
//! crafted models of the tests are made here from the fixture, not committed.

use crate::common;

use gemlet::ggml::Type;
use gemlet::gguf::{Gguf, GgufWriter, TensorInfo, Value};
use std::path::{Path, PathBuf};

/// One tensor as a rewrite writes it: type, dims and bytes (None: left out).
pub type Written = Option<(Type, Vec<u64>, Vec<u8>)>;

/// The tiny gemma3 model rewritten: metadata `set` on top of its own, and each tensor as `edit`
/// says from its table entry and bytes.
pub fn rewrite(
    dir: &Path,
    name: &str,
    set: &[(&str, Value<'static>)],
    edit: impl Fn(&TensorInfo, &[u8]) -> Written,
) -> PathBuf {
    rewrite_from("tiny-gemma3-f32", dir, name, &[], set, edit)
}

/// [`rewrite`] of the tiny fixture `from` (e.g. "tiny-gemma2-f32"), leaving out the keys `drop`.
pub fn rewrite_from(
    from: &str,
    dir: &Path,
    name: &str,
    drop: &[&str],
    set: &[(&str, Value<'static>)],
    edit: impl Fn(&TensorInfo, &[u8]) -> Written,
) -> PathBuf {
    let src = Gguf::open(common::fixture(&format!("tiny/{from}.gguf"))).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in src.metadata() {
        if !drop.contains(&k) {
            w.set(k, owned(v));
        }
    }
    for (k, v) in set {
        w.set(k, v.clone());
    }
    let mut data = Vec::new();
    for t in src.tensors() {
        if let Some((ty, dims, bytes)) = edit(t, src.tensor_data(t)) {
            w.add_tensor(&t.name, ty, &dims).unwrap();
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

/// Each tensor as it is.
pub fn same(t: &TensorInfo, bytes: &[u8]) -> Written {
    Some((t.ty, t.dims.clone(), bytes.to_vec()))
}

/// The tiny (F32) model with `edit_tensor` deciding each tensor's dims (None drops it).
pub fn variant(
    dir: &Path,
    name: &str,
    edit_tensor: impl Fn(&str, &[u64]) -> Option<Vec<u64>>,
) -> PathBuf {
    rewrite(dir, name, &[], |t, bytes| {
        edit_tensor(&t.name, &t.dims).map(|dims| {
            let mut bytes = bytes.to_vec();
            bytes.resize(dims.iter().product::<u64>() as usize * 4, 0);
            (t.ty, dims, bytes)
        })
    })
}

/// The tiny gemma3 model with metadata `key` set to `value` (added when it is missing).
pub fn with_key(dir: &Path, key: &str, value: Value<'static>) -> PathBuf {
    rewrite(dir, key, &[(key, value)], same)
}

/// The tiny gemma3 model with tensor `tensor` stored as `ty` (its bytes zero, or `fill`).
pub fn retyped(dir: &Path, name: &str, tensor: &str, ty: Type, fill: Option<&[u8]>) -> PathBuf {
    rewrite(dir, name, &[], |t, bytes| {
        if t.name != tensor {
            return same(t, bytes);
        }
        let rows: u64 = t.dims[1..].iter().product();
        let n = (ty.row_bytes(t.dims[0]).unwrap() * rows) as usize;
        let data = match fill {
            Some(f) => f.iter().copied().cycle().take(n).collect(),
            None => vec![0; n],
        };
        Some((ty, t.dims.clone(), data))
    })
}

pub fn owned(v: Value<'_>) -> Value<'static> {
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
