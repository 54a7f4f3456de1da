//! Crafted and corrupt GGUF files: each must give an error that names what is wrong, never a
//! panic, and never an allocation larger than the file itself.

use crate::alloc_probe;
use gemlet::gguf::{Gguf, GgufError};

/// Parses `bytes`, asserting no allocation exceeded the file's size (plus a small constant
/// for fixed-size bookkeeping), and returns the error message.
fn parse_err(bytes: Vec<u8>) -> String {
    let len = bytes.len();
    let input = bytes.clone();
    alloc_probe::reset_largest();
    let result = Gguf::from_bytes(input);
    let largest = alloc_probe::largest();
    assert!(
        largest <= len.max(1024),
        "allocated {largest} bytes for a {len}-byte file"
    );
    match result {
        Ok(_) => panic!("a corrupt file was accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_err(bytes: Vec<u8>, needles: &[&str]) {
    let msg = parse_err(bytes);
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
    }
}

/// Field-by-field GGUF builder, so tests can write any value into any field.
#[derive(Clone)]
pub struct Raw(pub Vec<u8>);
impl Raw {
    pub fn new() -> Raw {
        Raw(Vec::new())
    }
    pub fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u32(self, v: u32) -> Raw {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(self, v: u64) -> Raw {
        self.bytes(&v.to_le_bytes())
    }
    pub fn str(self, s: &[u8]) -> Raw {
        self.u64(s.len() as u64).bytes(s)
    }
    pub fn pad_to(mut self, align: usize) -> Raw {
        while self.0.len() % align != 0 {
            self.0.push(0);
        }
        self
    }
}

pub struct Tensor<'a> {
    name: &'a [u8],
    dims: Vec<u64>,
    ty: u32,
    offset: u64,
}

pub fn tensor<'a>(name: &'a str, dims: &[u64], ty: u32, offset: u64) -> Tensor<'a> {
    Tensor {
        name: name.as_bytes(),
        dims: dims.to_vec(),
        ty,
        offset,
    }
}

/// magic, version, counts, `kv` (already encoded), tensor table, padding to 32, `data` bytes.
pub fn file(version: u32, kv: &[Raw], tensors: &[Tensor<'_>], data: usize) -> Vec<u8> {
    let mut r = Raw::new()
        .bytes(b"GGUF")
        .u32(version)
        .u64(tensors.len() as u64)
        .u64(kv.len() as u64);
    for k in kv {
        r = r.bytes(&k.0);
    }
    for t in tensors {
        r = r.str(t.name).u32(t.dims.len() as u32);
        for &d in &t.dims {
            r = r.u64(d);
        }
        r = r.u32(t.ty).u64(t.offset);
    }
    let mut out = r.pad_to(32).0;
    out.resize(out.len() + data, 0);
    out
}

pub fn kv_str(key: &str, value: &str) -> Raw {
    Raw::new().str(key.as_bytes()).u32(8).str(value.as_bytes())
}

/// A valid file: two keys, a Q8_0 tensor (68 bytes at 0) and an F32 one (16 bytes at 96).
pub fn valid() -> Vec<u8> {
    file(
        3,
        &[
            kv_str("general.architecture", "gemma3"),
            Raw::new().str(b"general.alignment").u32(4).u32(32),
        ],
        &[tensor("a", &[32, 2], 8, 0), tensor("b", &[4], 0, 96)],
        112,
    )
}

#[test]
fn valid_file_is_accepted() {
    let g = Gguf::from_bytes(valid()).unwrap();
    assert_eq!(g.tensors().len(), 2);
    assert_eq!(g.architecture().unwrap(), "gemma3");
    assert_eq!(g.tensor_data(g.tensor("b").unwrap()).len(), 16);
}

#[test]
fn truncated_anywhere_is_an_error() {
    // Every prefix of the file, cutting through each header field, key, value, tensor entry
    // and the data.
    let full = valid();
    for len in 0..full.len() {
        let msg = parse_err(full[..len].to_vec());
        assert!(
            msg.contains("truncated") || msg.contains("GGUF"),
            "cut at {len}: {msg}"
        );
    }
}

#[test]
fn bad_magic() {
    let mut f = valid();
    f[..4].copy_from_slice(b"GGML");
    assert_err(f, &["not a GGUF file"]);
}

#[test]
fn unsupported_versions() {
    for v in [0u32, 1, 4] {
        let mut f = valid();
        f[4..8].copy_from_slice(&v.to_le_bytes());
        assert_err(f, &["version", &v.to_string()]);
    }
    let mut f = valid();
    f[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert_err(f, &["big-endian"]);
    let mut f = valid();
    f[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert!(Gguf::from_bytes(f).is_ok(), "version 2 is supported");
}

#[test]
fn huge_counts() {
    let mut f = valid();
    f[8..16].copy_from_slice(&(1u64 << 63).to_le_bytes());
    assert_err(f, &["tensor count", "9223372036854775808"]);
    let mut f = valid();
    f[16..24].copy_from_slice(&(1u64 << 63).to_le_bytes());
    assert_err(f, &["metadata key count"]);
    let mut f = valid();
    f[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_err(f, &["metadata key count"]);
}

#[test]
fn string_length_past_the_end() {
    let key = Raw::new().u64(1 << 40).bytes(b"general.name");
    assert_err(file(3, &[key], &[], 0), &["truncated", "metadata key #0"]);
    let value = Raw::new().str(b"general.name").u32(8).u64(u64::MAX - 3);
    assert_err(file(3, &[value], &[], 0), &["general.name", "truncated"]);
    let name = Raw::new().u64(5000);
    let mut f = file(3, &[], &[], 0);
    f.truncate(24);
    f[8..16].copy_from_slice(&1u64.to_le_bytes());
    f.extend_from_slice(&name.0);
    f.resize(f.len() + 100, 0);
    assert_err(f, &["name of tensor #0", "truncated"]);
}

#[test]
fn array_lengths_and_nesting() {
    // An array of 2^62 u32 in a small file.
    let arr = Raw::new()
        .str(b"tokenizer.ggml.scores")
        .u32(9)
        .u32(4)
        .u64(1 << 62);
    assert_err(file(3, &[arr], &[], 0), &["tokenizer.ggml.scores", "array"]);
    // Arrays nested 100 deep.
    let mut deep = Raw::new().str(b"deep").u32(9);
    for _ in 0..100 {
        deep = deep.u32(9).u64(1);
    }
    deep = deep.u32(4).u64(0);
    assert_err(file(3, &[deep], &[], 0), &["'deep'", "nested deeper"]);
    // Unknown value types, and a bool that is neither 0 nor 1.
    let bad = Raw::new().str(b"weird").u32(13).u32(0);
    assert_err(
        file(3, &[bad], &[], 0),
        &["'weird'", "unknown value type 13"],
    );
    let b = Raw::new().str(b"flag").u32(7).bytes(&[2]);
    assert_err(file(3, &[b], &[], 0), &["'flag'", "neither 0 nor 1"]);
}

#[test]
fn tensor_offsets() {
    let overflow = tensor("w", &[8], 0, u64::MAX - 31);
    assert_err(file(3, &[], &[overflow], 32), &["'w'", "overflow"]);
    let past_end = tensor("w", &[4], 0, 64);
    assert_err(file(3, &[], &[past_end], 32), &["'w'", "truncated"]);
    let misaligned = tensor("w", &[4], 0, 1);
    assert_err(file(3, &[], &[misaligned], 64), &["'w'", "alignment"]);
    let overlapping = [tensor("a", &[32], 0, 0), tensor("b", &[4], 0, 96)];
    assert_err(file(3, &[], &overlapping, 160), &["overlaps"]);
}

#[test]
fn tensor_shapes_and_types() {
    for n_dims in [0usize, 5] {
        let t = tensor("w", &vec![1; n_dims], 0, 0);
        assert_err(
            file(3, &[], &[t], 32),
            &["'w'", &format!("{n_dims} dimensions")],
        );
    }
    let t = tensor("w", &[1 << 32, 1 << 32, 2], 0, 0);
    assert_err(file(3, &[], &[t], 32), &["'w'", "overflow"]);
    let t = tensor("w", &[1 << 40, 1 << 22], 0, 0);
    assert_err(file(3, &[], &[t], 32), &["'w'"]);
    for id in [4u32, 31, 43, 1000] {
        let t = tensor("w", &[32], id, 0);
        assert_err(
            file(3, &[], &[t], 64),
            &["'w'", &format!("unknown ggml type id {id}")],
        );
    }
    let t = tensor("w", &[640], 12, 0);
    assert_err(file(3, &[], &[t], 1024), &["'w'", "block size 256"]);
}

#[test]
fn names() {
    let dup = [tensor("w", &[4], 0, 0), tensor("w", &[4], 0, 32)];
    assert_err(file(3, &[], &dup, 64), &["'w'", "twice"]);
    let bad_utf8 = Tensor {
        name: b"blk.\xff.attn",
        dims: vec![4],
        ty: 0,
        offset: 0,
    };
    assert_err(
        file(3, &[], &[bad_utf8], 32),
        &["name of tensor #0", "UTF-8"],
    );
    let key = Raw::new().str(b"general.\xc3").u32(4).u32(1);
    assert_err(file(3, &[key], &[], 0), &["metadata key #0", "UTF-8"]);
    let value = Raw::new().str(b"general.name").u32(8).str(b"\xe2\x82");
    assert_err(file(3, &[value], &[], 0), &["general.name", "UTF-8"]);
    let long = "x".repeat(64);
    let t = tensor(&long, &[4], 0, 0);
    assert_err(file(3, &[], &[t], 32), &["64 bytes"]);
    let k1 = kv_str("general.name", "a");
    assert_err(
        file(3, &[k1.clone(), k1], &[], 0),
        &["general.name", "twice"],
    );
}

#[test]
fn bad_alignment_key() {
    for v in [0u32, 3, 48] {
        let a = Raw::new().str(b"general.alignment").u32(4).u32(v);
        assert_err(
            file(3, &[a], &[], 0),
            &["general.alignment", "power of two"],
        );
    }
    let a = kv_str("general.alignment", "32");
    assert_err(file(3, &[a], &[], 0), &["general.alignment", "string"]);
}

#[test]
fn errors_from_files_name_the_path() {
    let dir = std::env::temp_dir().join(format!("gemlet-crafted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.gguf");
    std::fs::write(&path, b"GGUF\x01\0\0\0").unwrap();
    let e = Gguf::open(&path).err().unwrap();
    assert!(matches!(e, GgufError::InFile { .. }));
    assert!(
        e.to_string().contains("bad.gguf") && e.to_string().contains("version 1"),
        "{e}"
    );
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(Gguf::open(&empty)
        .err()
        .unwrap()
        .to_string()
        .contains("empty.gguf"));
    let missing = Gguf::open(dir.join("missing.gguf"))
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("missing.gguf"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // Each byte of a valid file (with arrays and strings) replaced by several values: the reader
    // either rejects the file or returns one whose every value and tensor can be read.
    let arrays = [
        Raw::new()
            .str(b"tokens")
            .u32(9)
            .u32(8)
            .u64(2)
            .str(b"ab")
            .str(b"c"),
        Raw::new()
            .str(b"scores")
            .u32(9)
            .u32(6)
            .u64(2)
            .u32(0)
            .u32(0x3f80_0000),
    ];
    let mut kv = vec![kv_str("general.architecture", "gemma3")];
    kv.extend(arrays);
    let base = file(
        3,
        &kv,
        &[tensor("a", &[32, 2], 8, 0), tensor("b", &[4], 0, 96)],
        112,
    );
    for pos in 0..base.len() {
        for v in [0x00u8, 0x01, 0x07, 0x20, 0x80, 0xff] {
            let mut f = base.clone();
            f[pos] = v;
            if let Ok(g) = Gguf::from_bytes(f) {
                for (_, value) in g.metadata() {
                    let _ = value.display(8);
                }
                for t in g.tensors() {
                    assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes);
                }
            }
        }
    }
}
