//! The Gemma family: configuration from metadata (and, next, weights, graph and KV cache).

pub mod census;
pub mod config;
pub mod memory;

pub use census::{Census, Component};
pub use config::{Arch, Config, SUPPORTED_ARCHITECTURES};
pub use memory::{MemoryPlan, PlanDims};

use crate::gguf::GgufError;

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
}

pub type Result<T> = std::result::Result<T, ModelError>;
