//! GGUF writer: metadata and tensor table first, then tensor data streamed one tensor at a time.

use super::reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_NAME_BYTES};
use super::value::MAX_NESTING;
use super::value::{Value, ValueType};
use super::{GgufError, Result};
use crate::ggml::Type;
use byteorder::{LittleEndian as LE, WriteBytesExt};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

struct PendingTensor {
    name: String,
    ty: Type,
    dims: Vec<u64>,
    offset: u64,
    n_bytes: u64,
}

/// Collects metadata and a tensor table, then writes them (see [`GgufWriter::create`]).
pub struct GgufWriter<'a> {
    kv: Vec<(String, Value<'a>)>,
    tensors: Vec<PendingTensor>,
    data_size: u64,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GgufWriter<'a> {
    /// A GGUF v3 file, alignment 32 unless `general.alignment` is set before tensors are added.
    pub fn new() -> GgufWriter<'a> {
        GgufWriter {
            kv: Vec::new(),
            tensors: Vec::new(),
            data_size: 0,
        }
    }

    /// Sets `key` (replacing an earlier value, keeping its position).
    pub fn set(&mut self, key: &str, value: Value<'a>) -> &mut Self {
        match self.kv.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.kv.push((key.to_string(), value)),
        }
        self
    }

    fn alignment(&self) -> u64 {
        self.kv
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| match v {
                Value::U32(a) if a.is_power_of_two() => Some(*a as u64),
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Appends a tensor to the table; its data must later be written in the same order.
    pub fn add_tensor(&mut self, name: &str, ty: Type, dims: &[u64]) -> Result<()> {
        let invalid = |problem: String| GgufError::Invalid {
            what: format!("tensor '{name}'"),
            problem,
        };
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(invalid(format!("name must be 1 to {MAX_NAME_BYTES} bytes")));
        }
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(invalid("added twice".into()));
        }
        if dims.is_empty() || dims.len() > 4 {
            return Err(invalid(format!(
                "{} dimensions, expected 1 to 4",
                dims.len()
            )));
        }
        let rows = dims[1..]
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| invalid("size overflows".into()))?;
        let n_bytes = ty
            .row_bytes(dims[0])
            .and_then(|r| r.checked_mul(rows))
            .ok_or_else(|| invalid(format!("row length {} is not whole {ty} blocks", dims[0])))?;
        let offset = self.data_size;
        self.data_size = (offset + n_bytes).next_multiple_of(self.alignment());
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            ty,
            dims: dims.to_vec(),
            offset,
            n_bytes,
        });
        Ok(())
    }

    /// Size of the data section once every tensor is written.
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// Writes header, metadata, tensor table and the padding before the data section to `path`;
    /// the returned writer takes the tensors' data in table order.
    pub fn create(self, path: impl AsRef<Path>) -> Result<TensorWriter<BufWriter<File>>> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.write_to(BufWriter::new(file))
    }

    /// As [`GgufWriter::create`], to any writer.
    pub fn write_to<W: Write>(self, mut w: W) -> Result<TensorWriter<W>> {
        let alignment = self.alignment();
        let mut head = Vec::new();
        head.extend_from_slice(&MAGIC);
        head.write_u32::<LE>(3)?;
        head.write_u64::<LE>(self.tensors.len() as u64)?;
        head.write_u64::<LE>(self.kv.len() as u64)?;
        for (key, value) in &self.kv {
            write_str(&mut head, key)?;
            head.write_u32::<LE>(value.value_type() as u32)?;
            write_value(&mut head, value, 0).map_err(|e| GgufError::Context {
                what: format!("metadata key '{key}'"),
                error: Box::new(e),
            })?;
        }
        for t in &self.tensors {
            write_str(&mut head, &t.name)?;
            head.write_u32::<LE>(t.dims.len() as u32)?;
            for &d in &t.dims {
                head.write_u64::<LE>(d)?;
            }
            head.write_u32::<LE>(t.ty.id())?;
            head.write_u64::<LE>(t.offset)?;
        }
        let padded = (head.len() as u64).next_multiple_of(alignment) as usize;
        head.resize(padded, 0);
        w.write_all(&head)?;
        Ok(TensorWriter {
            w,
            tensors: self.tensors,
            next: 0,
            written: 0,
            alignment,
            data_size: self.data_size,
        })
    }
}

/// Streams tensor data after the header, one tensor at a time, in table order.
pub struct TensorWriter<W: Write> {
    w: W,
    tensors: Vec<PendingTensor>,
    next: usize,
    written: u64,
    alignment: u64,
    data_size: u64,
}

impl<W: Write> TensorWriter<W> {
    /// The name of the tensor whose data comes next, if any.
    pub fn next_name(&self) -> Option<&str> {
        self.tensors.get(self.next).map(|t| t.name.as_str())
    }

    /// Writes the next tensor's data (exactly its size), then the alignment padding.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<()> {
        let t = self
            .tensors
            .get(self.next)
            .ok_or_else(|| GgufError::Invalid {
                what: "tensor data".into(),
                problem: "more tensors written than the table holds".into(),
            })?;
        if data.len() as u64 != t.n_bytes {
            return Err(GgufError::Invalid {
                what: format!("tensor '{}'", t.name),
                problem: format!("{} bytes of data, expected {}", data.len(), t.n_bytes),
            });
        }
        debug_assert_eq!(self.written, t.offset);
        self.w.write_all(data)?;
        let end = (t.offset + t.n_bytes).next_multiple_of(self.alignment);
        let pad = end - (t.offset + t.n_bytes);
        self.w.write_all(&vec![0u8; pad as usize])?;
        self.written = end;
        self.next += 1;
        Ok(())
    }

    /// Checks every tensor was written and flushes.
    pub fn finish(mut self) -> Result<W> {
        if let Some(name) = self.next_name() {
            return Err(GgufError::Invalid {
                what: format!("tensor '{name}'"),
                problem: "data was never written".into(),
            });
        }
        self.w.flush()?;
        Ok(self.w)
    }
}

impl TensorWriter<BufWriter<File>> {
    /// Ends the file without writing the remaining tensors' data: the file is extended to its
    /// full size with a hole, so those tensors read as zeros and cost no disk. For shape-only
    /// files (inspect tests, memory plans).
    pub fn finish_sparse(mut self) -> Result<()> {
        self.w.flush()?;
        let file = self.w.get_ref();
        let header_end = file.metadata()?.len() - self.written;
        file.set_len(header_end + self.data_size)?;
        Ok(())
    }
}

fn write_str(w: &mut Vec<u8>, s: &str) -> io::Result<()> {
    w.write_u64::<LE>(s.len() as u64)?;
    w.extend_from_slice(s.as_bytes());
    Ok(())
}

fn write_value(w: &mut Vec<u8>, v: &Value<'_>, depth: usize) -> Result<()> {
    match v {
        Value::U8(x) => w.write_u8(*x)?,
        Value::I8(x) => w.write_i8(*x)?,
        Value::U16(x) => w.write_u16::<LE>(*x)?,
        Value::I16(x) => w.write_i16::<LE>(*x)?,
        Value::U32(x) => w.write_u32::<LE>(*x)?,
        Value::I32(x) => w.write_i32::<LE>(*x)?,
        Value::U64(x) => w.write_u64::<LE>(*x)?,
        Value::I64(x) => w.write_i64::<LE>(*x)?,
        Value::F32(x) => w.write_f32::<LE>(*x)?,
        Value::F64(x) => w.write_f64::<LE>(*x)?,
        Value::Bool(x) => w.write_u8(*x as u8)?,
        Value::String(s) => write_str(w, s)?,
        Value::Array(a) => {
            if depth >= MAX_NESTING {
                return Err(GgufError::Invalid {
                    what: "array".into(),
                    problem: format!("nested deeper than {MAX_NESTING}"),
                });
            }
            w.write_u32::<LE>(a.elem_type() as u32)?;
            w.write_u64::<LE>(a.len() as u64)?;
            for item in a.iter() {
                if item.value_type() != a.elem_type() {
                    return Err(GgufError::Invalid {
                        what: "array".into(),
                        problem: format!(
                            "element of type {} in an array of {}",
                            item.value_type(),
                            a.elem_type()
                        ),
                    });
                }
                write_value(w, &item, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Convenience constructors for the common metadata shapes.
impl<'a> Value<'a> {
    pub fn strings<S: Into<std::borrow::Cow<'a, str>>>(items: impl IntoIterator<Item = S>) -> Self {
        Value::array(
            ValueType::String,
            items.into_iter().map(|s| Value::String(s.into())).collect(),
        )
    }

    pub fn f32s(items: impl IntoIterator<Item = f32>) -> Self {
        Value::array(ValueType::F32, items.into_iter().map(Value::F32).collect())
    }

    pub fn i32s(items: impl IntoIterator<Item = i32>) -> Self {
        Value::array(ValueType::I32, items.into_iter().map(Value::I32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::Gguf;

    fn every_value() -> Vec<(&'static str, Value<'static>)> {
        vec![
            ("u8", Value::U8(200)),
            ("i8", Value::I8(-100)),
            ("u16", Value::U16(60_000)),
            ("i16", Value::I16(-30_000)),
            ("u32", Value::U32(4_000_000_000)),
            ("i32", Value::I32(-2_000_000_000)),
            ("u64", Value::U64(u64::MAX)),
            ("i64", Value::I64(i64::MIN)),
            ("f32", Value::F32(-1.5e-6)),
            ("f64", Value::F64(std::f64::consts::PI)),
            ("nan", Value::F32(f32::NAN)),
            ("bool", Value::Bool(true)),
            ("string", Value::string("héllo ▁wörld")),
            ("empty string", Value::string("")),
            ("strings", Value::strings(["a", "", "<start_of_turn>"])),
            ("f32s", Value::f32s([0.0, -1.0, 1e30])),
            ("i32s", Value::i32s([1, -2, 3])),
            ("empty array", Value::array(ValueType::U8, vec![])),
            (
                "bools",
                Value::array(ValueType::Bool, vec![Value::Bool(false), Value::Bool(true)]),
            ),
            (
                "nested",
                Value::array(
                    ValueType::Array,
                    vec![
                        Value::i32s([1, 2]),
                        Value::strings(["x"]),
                        Value::array(ValueType::Array, vec![Value::f32s([9.0])]),
                    ],
                ),
            ),
        ]
    }

    fn write(w: GgufWriter<'_>, data: &[&[u8]]) -> Vec<u8> {
        let mut tw = w.write_to(Vec::new()).unwrap();
        for d in data {
            tw.write_tensor(d).unwrap();
        }
        tw.finish().unwrap()
    }

    #[test]
    fn every_value_type_round_trips() {
        let mut w = GgufWriter::new();
        for (k, v) in every_value() {
            w.set(k, v);
        }
        let g = Gguf::from_bytes(write(w, &[])).unwrap();
        assert_eq!(g.version(), 3);
        let keys: Vec<&str> = g.keys().collect();
        let want: Vec<&str> = every_value().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, want, "keys keep their order");
        for (k, v) in every_value() {
            assert_eq!(g.get(k).unwrap(), v, "key {k}");
        }
    }

    #[test]
    fn tensors_round_trip_aligned() {
        for alignment in [32u32, 64, 1] {
            let mut w = GgufWriter::new();
            w.set("general.alignment", Value::U32(alignment));
            w.add_tensor("a", Type::F32, &[3]).unwrap();
            w.add_tensor("b", Type::Q8_0, &[32, 2]).unwrap();
            w.add_tensor("c", Type::F16, &[5, 1, 1, 2]).unwrap();
            let a: Vec<u8> = (0..12).collect();
            let b: Vec<u8> = (0..68).map(|i| i as u8 ^ 0x5a).collect();
            let c: Vec<u8> = (0..20).map(|i| 255 - i as u8).collect();
            let g = Gguf::from_bytes(write(w, &[&a, &b, &c])).unwrap();
            assert_eq!(g.alignment(), alignment as u64);
            assert_eq!(g.data_offset() % alignment as u64, 0);
            for (name, data) in [("a", &a), ("b", &b), ("c", &c)] {
                let info = g.tensor(name).unwrap();
                assert_eq!(info.offset % alignment as u64, 0);
                assert_eq!(g.tensor_data(info), &data[..], "tensor {name}");
            }
            assert_eq!(g.tensor("c").unwrap().dims, vec![5, 1, 1, 2]);
            assert_eq!(g.tensor("b").unwrap().ty, Type::Q8_0);
        }
    }

    #[test]
    fn writer_refuses_bad_tensors() {
        let mut w = GgufWriter::new();
        assert!(w.add_tensor("q", Type::Q4_K, &[640]).is_err());
        assert!(w.add_tensor("", Type::F32, &[1]).is_err());
        assert!(w.add_tensor("x", Type::F32, &[1, 1, 1, 1, 1]).is_err());
        w.add_tensor("x", Type::F32, &[2]).unwrap();
        assert!(w.add_tensor("x", Type::F32, &[2]).is_err());
        let mut tw = w.write_to(Vec::new()).unwrap();
        assert!(tw.write_tensor(&[0; 7]).is_err());
        let tw2 = GgufWriter::new();
        let mut tw2 = tw2.write_to(Vec::new()).unwrap();
        assert!(tw2.write_tensor(&[0; 8]).is_err());
        tw.write_tensor(&[0; 8]).unwrap();
        tw.finish().unwrap();
    }

    #[test]
    fn typed_accessors_name_key_and_type() {
        let mut w = GgufWriter::new();
        w.set("gemma3.block_count", Value::U32(18));
        w.set("small", Value::U8(7));
        w.set("name", Value::string("x"));
        w.set("neg", Value::I32(-1));
        let g = Gguf::from_bytes(write(w, &[])).unwrap();
        assert_eq!(g.get_u32("gemma3.block_count").unwrap(), 18);
        assert_eq!(g.get_u32("small").unwrap(), 7);
        assert_eq!(g.get_f32("small").unwrap(), 7.0);
        let e = g.get_u32("name").unwrap_err().to_string();
        assert!(e.contains("'name'") && e.contains("string"), "{e}");
        let e = g.get_u32("neg").unwrap_err().to_string();
        assert!(e.contains("'neg'") && e.contains("-1"), "{e}");
        let e = g.get_u32("gemma3.context_length").unwrap_err().to_string();
        assert!(
            e.contains("gemma3.context_length") && e.contains("missing"),
            "{e}"
        );
        assert_eq!(g.opt("absent", Gguf::get_u32).unwrap(), None);
        assert!(g.opt("name", Gguf::get_u32).is_err());
    }
}
