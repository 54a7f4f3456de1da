//! gemlet's integration tests, one module per subject, linked into one test binary: one link
//! of the library instead of one per file (see the README's "Tests").

mod alloc_probe;
mod common;

mod bad_models;
mod bundle;
mod chat;
mod chat_cli;
mod crafted_suite;
mod embedding;
mod gemma3n;
mod ggml_ops;
mod gguf_crafted;
mod gguf_real_model;
mod huge_pages;
mod inspect;
mod kv_cache;
mod load_options;
mod naive_forward;
mod no_alloc_per_token;
mod real_model_greedy;
mod real_model_perplexity;
mod repack;
mod rewrite;
mod tiny_models;
mod tokenize_cli;
mod tokenizer_fixture;
mod tokenizer_tiny;
