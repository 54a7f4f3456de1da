//! gemlet: run quantized Gemma models from GGUF files on small CPUs.
//!
//! Layers, lowest first: [`ggml`] (the vendored kernels behind a safe wrapper), [`gguf`] (the
//! file format).

pub mod bench;
pub mod chat;
pub mod ggml;
pub mod gguf;
pub mod model;
pub mod perplexity;
pub mod sampling;
pub mod session;
pub mod tokenizer;

pub mod cli;
