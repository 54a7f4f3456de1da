//! The GGUF file format: a validating reader over a memory map and a streaming writer.
//!
//! Key and tensor names follow llama.cpp's `gguf-py` (`general.architecture`,
//! `{arch}.block_count`, `blk.N.attn_q.weight`, ...).

pub mod bundle;
mod file_type;
mod map;
mod reader;
mod value;
mod writer;

pub use file_type::{file_type_id, file_type_name};
pub use map::HugePages;
pub use reader::{Gguf, OpenOptions, TensorInfo, DEFAULT_ALIGNMENT};
pub use value::{Array, Value, ValueType, MAX_NESTING};
pub use writer::{GgufWriter, TensorWriter};

use std::path::PathBuf;

/// Errors of the GGUF layer; each names the file, key or tensor and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Write(#[from] std::io::Error),
    #[error("{path} is {kind}, not a model file")]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{path}: {error}")]
    InFile {
        path: PathBuf,
        error: Box<GgufError>,
    },
    #[error("{what}: {error}")]
    Context { what: String, error: Box<GgufError> },
    #[error("not a GGUF file: starts with {0:02x?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("big-endian GGUF (version {0}) is not supported: convert it to little-endian")]
    BigEndian(u32),
    #[error("GGUF version {0} is not supported (gemlet reads versions 2 and 3)")]
    Version(u32),
    #[error("truncated file: {what} at offset {offset} needs {needed} bytes, {available} remain")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String },
    #[error("metadata key '{key}' is missing")]
    MissingKey { key: String },
    #[error("metadata key '{key}' is {found}, expected {expected}")]
    KeyType {
        key: String,
        expected: &'static str,
        found: String,
    },
}

pub type Result<T> = std::result::Result<T, GgufError>;
