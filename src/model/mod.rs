//! The Gemma family: configuration from metadata, weights over the memory map, the forward
//! graph and the KV cache.

pub mod census;
pub mod config;
pub mod gemma;
pub mod gemma3n;
pub mod kv_cache;
pub mod memory;
pub mod weights;

pub use census::{Census, Component};
pub use config::{
    Arch, Config, Dims, EmbeddingHead, LayerKind, PerKind, Pooling, SUPPORTED_ARCHITECTURES,
};
pub use memory::{MemoryPlan, RowTable};

use crate::gguf::{Gguf, GgufError, OpenOptions};
use crate::tokenizer::{Tokenizer, TokenizerError};
use std::path::Path;

/// A loaded model file: its mapped contents, configuration and tokenizer.
pub struct Model {
    gguf: Gguf,
    config: Config,
    tokenizer: Tokenizer,
}

impl Model {
    /// Maps the file, reads and validates the configuration and every weight's shape, builds
    /// the tokenizer, and brings the weights into memory ([`Gguf::fault_in`]). Weights stay in
    /// the map.
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Self::load_with(path, OpenOptions::default())
    }

    /// Like [`Model::load`], reading the file as `opts` says (`--no-mmap`, `--mlock`).
    pub fn load_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Model> {
        let model = Self::check(path, opts)?;
        model.gguf.fault_in();
        Ok(model)
    }

    /// Everything [`Model::load_with`] validates, without reading the weights into memory (for
    /// `bundle`, which only copies the file).
    pub fn check(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Model> {
        let gguf = Gguf::open_with(path.as_ref(), opts)?;
        let config = Config::from_gguf(&gguf)?;
        // Binding checks every tensor's presence and shape now, not at the first token.
        weights::Weights::bind(&gguf, &config, weights::Repack::Off)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        if tokenizer.n_vocab() != config.dims.n_vocab {
            return Err(ModelError::Config(format!(
                "the tokenizer has {} tokens but token_embd.weight has {} rows",
                tokenizer.n_vocab(),
                config.dims.n_vocab
            )));
        }
        Ok(Model {
            gguf,
            config,
            tokenizer,
        })
    }

    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// Errors of the model layer; each names the key or tensor and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("architecture '{found}' is not supported (gemlet runs: {})", SUPPORTED_ARCHITECTURES.join(", "))]
    Architecture { found: String },
    #[error("invalid model configuration: {0}")]
    Config(String),
    #[error("tensor '{0}' is missing")]
    MissingTensor(String),
    #[error("tensor '{tensor}' is {found}, expected {expected}")]
    TensorType {
        tensor: String,
        found: crate::ggml::Type,
        expected: &'static str,
    },
    #[error("tensor '{tensor}' has shape {found:?}, expected {expected:?}")]
    Shape {
        tensor: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error(transparent)]
    Ggml(#[from] crate::ggml::GgmlError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

pub type Result<T> = std::result::Result<T, ModelError>;
