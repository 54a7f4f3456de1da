//! GGUF metadata values: the 13 value types, read without copying from the file's bytes.

use super::{GgufError, Result};
use byteorder::{ByteOrder, LittleEndian as LE};
use std::borrow::Cow;
use std::fmt;

/// Arrays of arrays deeper than this are refused (a crafted file could exhaust the stack).
pub const MAX_NESTING: usize = 8;

/// A bounds-checked little-endian reader over a byte slice.
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(super) fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                available: self.remaining() as u64,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(LE::read_u32(self.take(4, what)?))
    }

    pub(super) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(LE::read_u64(self.take(8, what)?))
    }

    /// A length-prefixed UTF-8 string.
    pub(super) fn str(&mut self, what: &str) -> Result<&'a str> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|e| GgufError::Invalid {
            what: what.to_string(),
            problem: format!("not valid UTF-8 ({e})"),
        })
    }

    pub(super) fn value_type(&mut self, what: &str) -> Result<ValueType> {
        let id = self.u32(what)?;
        ValueType::from_id(id).ok_or_else(|| GgufError::Invalid {
            what: what.to_string(),
            problem: format!("unknown value type {id}"),
        })
    }

    /// A value of type `ty`; arrays are validated element by element and returned as raw
    /// slices. `depth` counts enclosing arrays.
    pub(super) fn value(&mut self, ty: ValueType, depth: usize) -> Result<Value<'a>> {
        let what = "value";
        Ok(match ty {
            ValueType::U8 => Value::U8(self.take(1, what)?[0]),
            ValueType::I8 => Value::I8(self.take(1, what)?[0] as i8),
            ValueType::U16 => Value::U16(LE::read_u16(self.take(2, what)?)),
            ValueType::I16 => Value::I16(LE::read_i16(self.take(2, what)?)),
            ValueType::U32 => Value::U32(LE::read_u32(self.take(4, what)?)),
            ValueType::I32 => Value::I32(LE::read_i32(self.take(4, what)?)),
            ValueType::U64 => Value::U64(LE::read_u64(self.take(8, what)?)),
            ValueType::I64 => Value::I64(LE::read_i64(self.take(8, what)?)),
            ValueType::F32 => Value::F32(LE::read_f32(self.take(4, what)?)),
            ValueType::F64 => Value::F64(LE::read_f64(self.take(8, what)?)),
            ValueType::Bool => match self.take(1, what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufError::Invalid {
                        what: "bool value".into(),
                        problem: format!("byte {b} is neither 0 nor 1"),
                    })
                }
            },
            ValueType::String => Value::String(Cow::Borrowed(self.str("string value")?)),
            ValueType::Array => {
                if depth >= MAX_NESTING {
                    return Err(GgufError::Invalid {
                        what: "array".into(),
                        problem: format!("arrays nested deeper than {MAX_NESTING}"),
                    });
                }
                let elem = self.value_type("array element type")?;
                let len = self.u64("array length")?;
                // Every element takes at least this many bytes, so a length the file cannot
                // hold is refused before anything is walked or allocated.
                let min = elem.fixed_size().unwrap_or(match elem {
                    ValueType::String => 8,
                    _ => 12,
                }) as u64;
                if len > self.remaining() as u64 / min {
                    return Err(GgufError::Truncated {
                        what: format!("array of {len} {elem}"),
                        offset: self.pos as u64,
                        needed: len.saturating_mul(min),
                        available: self.remaining() as u64,
                    });
                }
                let start = self.pos;
                match elem.fixed_size() {
                    Some(size) => {
                        self.take(len * size as u64, "array")?;
                        if elem == ValueType::Bool {
                            let bytes = &self.bytes[start..self.pos];
                            if let Some(b) = bytes.iter().find(|&&b| b > 1) {
                                return Err(GgufError::Invalid {
                                    what: "bool array".into(),
                                    problem: format!("byte {b} is neither 0 nor 1"),
                                });
                            }
                        }
                    }
                    None => {
                        for _ in 0..len {
                            self.value(elem, depth + 1)?;
                        }
                    }
                }
                Value::Array(Array::Raw {
                    elem,
                    len: len as usize,
                    bytes: &self.bytes[start..self.pos],
                })
            }
        })
    }
}

/// The type tag of a metadata value (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size of a fixed-size value, `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value. Values read from a file borrow its bytes (strings, arrays); values built
/// for writing own theirs.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(Cow<'a, str>),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// An array value: elements of one type.
#[derive(Debug, Clone)]
pub enum Array<'a> {
    /// Elements as they lie in a validated file (decoded on access).
    Raw {
        elem: ValueType,
        len: usize,
        bytes: &'a [u8],
    },
    /// Elements built in memory.
    Owned(ValueType, Vec<Value<'a>>),
}

impl<'a> Value<'a> {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// A string value.
    pub fn string(s: impl Into<Cow<'a, str>>) -> Value<'a> {
        Value::String(s.into())
    }

    /// An array of `elem` values built in memory.
    pub fn array(elem: ValueType, items: Vec<Value<'a>>) -> Value<'a> {
        Value::Array(Array::Owned(elem, items))
    }

    /// Any integer value that fits in an i128 (all of them), else None.
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// Any numeric value as f64 (floats, and integers exactly where they fit).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_integer().map(|i| i as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array<'a>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A short human rendering; arrays longer than `max_items` are summarized by length and
    /// their first items.
    pub fn display(&self, max_items: usize) -> String {
        match self {
            Value::String(s) => format!("{s:?}"),
            Value::Array(a) => {
                let items: Vec<String> = a.iter().take(max_items).map(|v| v.display(3)).collect();
                if a.len() > max_items {
                    format!(
                        "[{}, ...] ({} {})",
                        items.join(", "),
                        a.len(),
                        a.elem_type()
                    )
                } else {
                    format!("[{}]", items.join(", "))
                }
            }
            Value::F32(v) => format!("{v}"),
            Value::F64(v) => format!("{v}"),
            Value::Bool(v) => format!("{v}"),
            other => format!("{}", other.as_integer().unwrap_or_default()),
        }
    }
}

impl PartialEq for Value<'_> {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (U8(a), U8(b)) => a == b,
            (I8(a), I8(b)) => a == b,
            (U16(a), U16(b)) => a == b,
            (I16(a), I16(b)) => a == b,
            (U32(a), U32(b)) => a == b,
            (I32(a), I32(b)) => a == b,
            (U64(a), U64(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            // Bitwise, so that NaN round-trips compare equal.
            (F32(a), F32(b)) => a.to_bits() == b.to_bits(),
            (F64(a), F64(b)) => a.to_bits() == b.to_bits(),
            (Bool(a), Bool(b)) => a == b,
            (String(a), String(b)) => a == b,
            (Array(a), Array(b)) => {
                a.elem_type() == b.elem_type() && a.len() == b.len() && a.iter().eq(b.iter())
            }
            _ => false,
        }
    }
}

impl<'a> Array<'a> {
    pub fn elem_type(&self) -> ValueType {
        match self {
            Array::Raw { elem, .. } | Array::Owned(elem, _) => *elem,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Array::Raw { len, .. } => *len,
            Array::Owned(_, items) => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements in order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = Value<'a>> + '_> {
        match self {
            Array::Raw { elem, len, bytes } => {
                let mut cursor = Cursor::new(bytes);
                let elem = *elem;
                Box::new((0..*len).map(move |_| {
                    // The bytes were validated when the file was opened.
                    cursor
                        .value(elem, 0)
                        .expect("array elements were validated on open")
                }))
            }
            Array::Owned(_, items) => Box::new(items.iter().cloned()),
        }
    }

    /// The elements as strings (`None` if they are not strings).
    pub fn strings(&self) -> Option<Vec<Cow<'a, str>>> {
        if self.elem_type() != ValueType::String {
            return None;
        }
        // Fast path for file arrays (a vocabulary has 262k of them): walk the validated bytes.
        if let Array::Raw { len, bytes, .. } = *self {
            let mut out = Vec::with_capacity(len);
            let mut pos = 0;
            for _ in 0..len {
                let n = u64::from_le_bytes(bytes[pos..pos + 8].try_into().ok()?) as usize;
                let s = std::str::from_utf8(&bytes[pos + 8..pos + 8 + n]).ok()?;
                out.push(Cow::Borrowed(s));
                pos += 8 + n;
            }
            return Some(out);
        }
        Some(
            self.iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    _ => unreachable!("element type is string"),
                })
                .collect(),
        )
    }

    /// The raw 4-byte little-endian elements of a file array of type `elem`, decoded by `f`:
    /// the fast path for the vocabulary's 262k scores and token types.
    fn raw4<T>(&self, elem: ValueType, f: fn([u8; 4]) -> T) -> Option<Vec<T>> {
        match *self {
            Array::Raw { elem: e, bytes, .. } if e == elem => Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| f([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Numeric elements as f32 (`None` if they are not numbers).
    pub fn f32s(&self) -> Option<Vec<f32>> {
        self.raw4(ValueType::F32, f32::from_le_bytes)
            .or_else(|| self.iter().map(|v| v.as_f64().map(|x| x as f32)).collect())
    }

    /// Integer elements as i64 (`None` if they are not integers that fit).
    pub fn i64s(&self) -> Option<Vec<i64>> {
        self.raw4(ValueType::I32, |b| i32::from_le_bytes(b) as i64)
            .or_else(|| {
                self.iter()
                    .map(|v| v.as_integer().and_then(|i| i64::try_from(i).ok()))
                    .collect()
            })
    }
}
