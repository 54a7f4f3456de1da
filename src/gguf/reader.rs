//! GGUF reader: header, metadata and tensor table validated on open; tensor data handed out as
//! slices of the memory map.
//!
//! Nothing read from the file sizes an allocation before it has been checked against the bytes
//! that are actually there.

use super::map::{HugePages, Mapped};
use super::value::{Array, Cursor, Value, ValueType};
use super::{GgufError, Result};
use crate::ggml::Type;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// "GGUF" as the first four bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml keeps tensor names in a 64-byte array with a terminating NUL.
pub const MAX_NAME_BYTES: usize = 63;

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: Type,
    /// Elements per dimension, ggml order (`dims[0]` is the row length).
    pub dims: Vec<u64>,
    /// Offset of the data inside the data section.
    pub offset: u64,
    /// Bytes of data.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Dimensions as usize (they were checked to fit when the file was opened).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().map(|&d| d as usize).collect()
    }
}

/// Where the file's bytes live.
enum Source {
    /// A map of the file itself, or anonymous pages it was read into.
    Map(Mapped),
    Owned(Vec<u8>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Map(m) => m.bytes(),
            Source::Owned(v) => v,
        }
    }
}

/// A metadata value's place in the file.
#[derive(Clone, Copy)]
struct RawValue {
    ty: ValueType,
    start: usize,
    end: usize,
}

/// An opened, validated GGUF file.
pub struct Gguf {
    source: Source,
    path: Option<PathBuf>,
    version: u32,
    alignment: u64,
    keys: Vec<(String, RawValue)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    data_offset: u64,
}

/// How [`Gguf::open_with`] brings the file into memory (llama.cpp's `--no-mmap`, `--mlock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Map the file (pages are read on first use and shared with the page cache); otherwise
    /// read it whole into anonymous memory.
    pub mmap: bool,
    /// Lock the pages in RAM, so that they are never paged out.
    pub mlock: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            mmap: true,
            mlock: false,
        }
    }
}

impl Gguf {
    /// Maps `path` and validates its header, metadata and tensor table. Tensor data is not read
    /// (see [`Gguf::fault_in`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Like [`Gguf::open`], reading or locking the file as `opts` says.
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Gguf> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Before opening: opening a FIFO for reading blocks until someone writes to it.
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            let kind = if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file (a device, a pipe or a socket)"
            };
            return Err(GgufError::NotAFile {
                path: path.to_path_buf(),
                kind,
            });
        }
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        // A bundle (an executable with a model appended) holds the GGUF at an offset.
        let (offset, len) = match super::bundle::find(&mut file, len).map_err(io)? {
            Some(e) => (e.offset, e.len),
            None => (0, len),
        };
        let source = if len == 0 {
            Source::Owned(Vec::new())
        } else {
            let len = usize::try_from(len).map_err(|_| {
                io(std::io::Error::other(
                    "the file is larger than the address space",
                ))
            })?;
            Source::Map(
                super::map::Mapped::open(file, offset, len, opts.mmap, opts.mlock).map_err(io)?,
            )
        };
        Self::parse(source, Some(path.to_path_buf())).map_err(|e| GgufError::InFile {
            path: path.to_path_buf(),
            error: Box::new(e),
        })
    }

    /// Parses a GGUF image held in memory (tests, generated files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf> {
        Self::parse(Source::Owned(bytes), None)
    }

    fn parse(source: Source, path: Option<PathBuf>) -> Result<Gguf> {
        let bytes = source.bytes();
        let mut c = Cursor::new(bytes);
        let magic = c.take(4, "magic")?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic([
                magic[0], magic[1], magic[2], magic[3],
            ]));
        }
        let version = c.u32("version")?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(GgufError::BigEndian(version.swap_bytes()));
        }
        if version != 2 && version != 3 {
            return Err(GgufError::Version(version));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata key count")?;
        // Minimum encoded sizes: a key/value is a key (8-byte length, >= 1 byte), a type tag and
        // >= 1 byte of value; a tensor is a name (8 + >= 1), n_dims, >= 1 dim, type, offset.
        check_count(n_kv, 13, c.remaining(), "metadata key count", c.pos)?;

        let mut keys = Vec::new();
        let mut key_index = HashMap::new();
        for i in 0..n_kv {
            let key = c.str(&format!("metadata key #{i}"))?;
            let context = |e: GgufError| GgufError::Context {
                what: format!("metadata key '{key}'"),
                error: Box::new(e),
            };
            if key.is_empty() {
                return Err(GgufError::Invalid {
                    what: format!("metadata key #{i}"),
                    problem: "empty key".into(),
                });
            }
            let ty = c.value_type("value type").map_err(context)?;
            let start = c.pos;
            c.value(ty, 0).map_err(context)?;
            let raw = RawValue {
                ty,
                start,
                end: c.pos,
            };
            if key_index.insert(key.to_string(), keys.len()).is_some() {
                return Err(GgufError::Invalid {
                    what: format!("metadata key '{key}'"),
                    problem: "appears twice".into(),
                });
            }
            keys.push((key.to_string(), raw));
        }

        let mut alignment = DEFAULT_ALIGNMENT;
        if let Some(&i) = key_index.get("general.alignment") {
            let raw = keys[i].1;
            let v = Cursor::new(&bytes[raw.start..raw.end]).value(raw.ty, 0)?;
            alignment = match v {
                Value::U32(a) if a.is_power_of_two() => a as u64,
                other => {
                    return Err(GgufError::Invalid {
                        what: "metadata key 'general.alignment'".into(),
                        problem: format!(
                            "{} {}, expected a u32 power of two",
                            other.value_type(),
                            other.display(4)
                        ),
                    })
                }
            };
        }

        check_count(n_tensors, 33, c.remaining(), "tensor count", c.pos)?;
        let mut tensors = Vec::new();
        let mut tensor_index = HashMap::new();
        for i in 0..n_tensors {
            let info = read_tensor_info(&mut c, i)?;
            if tensor_index
                .insert(info.name.clone(), tensors.len())
                .is_some()
            {
                return Err(GgufError::Invalid {
                    what: format!("tensor '{}'", info.name),
                    problem: "name appears twice in the tensor table".into(),
                });
            }
            tensors.push(info);
        }

        let data_offset = (c.pos as u64).next_multiple_of(alignment);
        let data_len = (bytes.len() as u64).saturating_sub(data_offset);
        check_tensor_ranges(&tensors, alignment, data_len, data_offset)?;

        Ok(Gguf {
            version,
            alignment,
            keys,
            key_index,
            tensors,
            tensor_index,
            data_offset,
            path,
            source,
        })
    }

    /// How much of the file's memory sits on transparent huge pages, as measured when it was
    /// read (`--no-mmap`) or faulted in ([`Gguf::fault_in`]); `None` before that, where it
    /// cannot be measured, or for an image built in memory.
    pub fn huge_pages(&self) -> Option<HugePages> {
        match &self.source {
            Source::Map(m) => m.huge_pages(),
            Source::Owned(_) => None,
        }
    }

    /// Brings the whole file into memory now, on huge pages where the system allows (see
    /// `gguf/map.rs`): for weights about to be computed with. Opening a file reads only the
    /// pages its header, metadata and tensor table touch; `inspect`, `tokenize` and `bundle`
    /// never call this. Done once; returns the huge-page figures.
    pub fn fault_in(&self) -> Option<HugePages> {
        match &self.source {
            Source::Map(m) => m.fault_in(),
            Source::Owned(_) => None,
        }
    }

    /// The file's path, when it was opened from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.source.bytes().len() as u64
    }

    /// Metadata keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, Value<'_>)> {
        self.keys
            .iter()
            .map(|(k, raw)| (k.as_str(), self.decode(*raw)))
    }

    fn decode(&self, raw: RawValue) -> Value<'_> {
        Cursor::new(&self.source.bytes()[raw.start..raw.end])
            .value(raw.ty, 0)
            .expect("metadata was validated on open")
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        self.key_index
            .get(key)
            .map(|&i| self.decode(self.keys[i].1))
    }

    fn require(&self, key: &str) -> Result<Value<'_>> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn type_error(key: &str, expected: &'static str, found: &Value<'_>) -> GgufError {
        GgufError::KeyType {
            key: key.to_string(),
            expected,
            found: format!("{} {}", found.value_type(), found.display(4)),
        }
    }

    /// An integer key as u32 (any integer type whose value fits).
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| Self::type_error(key, "an unsigned 32-bit integer", &v))
    }

    /// An integer key as u64 (any integer type whose value fits).
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| Self::type_error(key, "an unsigned integer", &v))
    }

    /// A numeric key as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| Self::type_error(key, "a number", &v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Value::Bool(b) => Ok(b),
            v => Err(Self::type_error(key, "a bool", &v)),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<Cow<'_, str>> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            v => Err(Self::type_error(key, "a string", &v)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<Array<'_>> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(Self::type_error(key, "an array", &v)),
        }
    }

    /// `Ok(None)` when the key is absent, an error when it has the wrong type.
    pub fn opt<T>(&self, key: &str, get: fn(&Self, &str) -> Result<T>) -> Result<Option<T>> {
        if self.key_index.contains_key(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<Cow<'_, str>> {
        self.get_str("general.architecture")
    }

    /// The tensor table in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, borrowed from the map (never copied). The range was validated on
    /// open, so this cannot fail for a tensor of this file.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + info.offset) as usize;
        &self.source.bytes()[start..start + info.n_bytes as usize]
    }

    /// Gives back the memory of the pages lying wholly inside `bytes` (a slice of this file,
    /// e.g. tensor data a repacked copy has replaced). They read the same if touched again: a
    /// map of the file faults them in from it, and anonymous memory (`--no-mmap`) gets the
    /// file mapped back over the range. Locked pages stay; returns whether pages were released.
    pub fn release(&self, bytes: &[u8]) -> bool {
        let Source::Map(m) = &self.source else {
            return false;
        };
        let base = m.bytes().as_ptr() as usize;
        let start = bytes.as_ptr() as usize;
        match start.checked_sub(base) {
            Some(from) => m.release(from, from.saturating_add(bytes.len())),
            None => false,
        }
    }
}

fn check_count(count: u64, min_bytes: u64, remaining: usize, what: &str, at: usize) -> Result<()> {
    if count > remaining as u64 / min_bytes {
        return Err(GgufError::Truncated {
            what: format!("{what} {count}"),
            offset: at as u64,
            needed: count.saturating_mul(min_bytes),
            available: remaining as u64,
        });
    }
    Ok(())
}

fn read_tensor_info(c: &mut Cursor<'_>, i: u64) -> Result<TensorInfo> {
    let name = c.str(&format!("name of tensor #{i}"))?;
    let invalid = |problem: String| GgufError::Invalid {
        what: format!("tensor '{name}'"),
        problem,
    };
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "name is {} bytes, expected 1 to {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    let n_dims = c.u32("dimension count")?;
    if !(1..=4).contains(&n_dims) {
        return Err(invalid(format!("{n_dims} dimensions, expected 1 to 4")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut n: u64 = 1;
    for _ in 0..n_dims {
        let d = c.u64("dimension")?;
        if d > i64::MAX as u64 {
            return Err(invalid(format!("dimension {d} exceeds ggml's int64 range")));
        }
        n = n
            .checked_mul(d)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| invalid(format!("element count of {dims:?} x {d} overflows")))?;
        dims.push(d);
    }
    let type_id = c.u32("tensor type")?;
    let ty =
        Type::from_id(type_id).ok_or_else(|| invalid(format!("unknown ggml type id {type_id}")))?;
    let offset = c.u64("tensor offset")?;
    if dims[0] % ty.block_size() as u64 != 0 {
        return Err(invalid(format!(
            "row length {} is not a multiple of {ty}'s block size {}",
            dims[0],
            ty.block_size()
        )));
    }
    let n_bytes = ty
        .row_bytes(dims[0])
        .and_then(|row| row.checked_mul(n / dims[0].max(1)))
        .ok_or_else(|| invalid("byte size overflows".into()))?;
    Ok(TensorInfo {
        name: name.to_string(),
        ty,
        dims,
        offset,
        n_bytes,
    })
}

/// Every tensor's bytes lie inside the data section, aligned, and no two overlap.
fn check_tensor_ranges(
    tensors: &[TensorInfo],
    alignment: u64,
    data_len: u64,
    data_offset: u64,
) -> Result<()> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    let mut prev: Option<&TensorInfo> = None;
    for t in order {
        let invalid = |problem: String| GgufError::Invalid {
            what: format!("tensor '{}'", t.name),
            problem,
        };
        if t.offset % alignment != 0 {
            return Err(invalid(format!(
                "offset {} is not a multiple of the alignment {alignment}",
                t.offset
            )));
        }
        let end = t
            .offset
            .checked_add(t.n_bytes)
            .ok_or_else(|| invalid(format!("offset {} + size overflows", t.offset)))?;
        if end > data_len {
            return Err(GgufError::Truncated {
                what: format!("data of tensor '{}'", t.name),
                offset: data_offset.saturating_add(t.offset),
                needed: t.n_bytes,
                available: data_len.saturating_sub(t.offset),
            });
        }
        if let Some(p) = prev {
            if p.offset + p.n_bytes > t.offset && t.n_bytes > 0 {
                return Err(invalid(format!(
                    "data [{}, {}) overlaps tensor '{}' [{}, {})",
                    t.offset,
                    end,
                    p.name,
                    p.offset,
                    p.offset + p.n_bytes
                )));
            }
        }
        if t.n_bytes > 0 {
            prev = Some(t);
        }
    }
    Ok(())
}
