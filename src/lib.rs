//! gemlet: run quantized Gemma models from GGUF files on small CPUs.
//!
//! Layers, lowest first; each uses only those before it:
//! - [`ggml`]: the vendored kernels behind a safe wrapper;
//! - [`gguf`]: the file format (reader over a memory map, writer);
//! - [`tokenizer`], [`model`]: the vocabulary, and the Gemma family (config from metadata,
//!   weights, KV cache, the forward graph, the memory plan);
//! - [`sampling`], [`session`]: choosing tokens, and one conversation's state over a model;
//! - [`chat`], [`perplexity`], [`bench`]: what is done with sessions;
//! - [`cli`]: the command line over all of it.

pub mod bench;
pub mod chat;
pub mod embedding;
pub mod ggml;
pub mod gguf;
pub mod model;
pub mod perplexity;
pub mod sampling;
pub mod session;
pub mod tokenizer;

pub mod cli;
