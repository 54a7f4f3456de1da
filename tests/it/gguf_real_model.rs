//! The real Gemma 3 270M file read by gemlet's GGUF reader, compared with what the reference
//! reader (gguf-py 0.19.0, recorded in tests/fixtures/gemma3-270m.gguf-py.json by
//! scripts/gguf-py-census.py) sees in it.

use crate::common;

use gemlet::gguf::Gguf;
use gemlet::model::{Census, Config};
use serde_json::Value as Json;

fn reference() -> Json {
    let text = std::fs::read_to_string(common::fixture("gemma3-270m.gguf-py.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn tensor_table_and_counts_match_gguf_py() {
    let g = Gguf::open(common::real_model()).unwrap();
    let want = reference();
    assert_eq!(g.version() as u64, want["version"].as_u64().unwrap());
    assert_eq!(g.data_offset(), want["data_offset"].as_u64().unwrap());
    assert_eq!(g.keys().count() as u64, want["key_count"].as_u64().unwrap());
    assert_eq!(g.tensors().len(), 236);
    let census = Census::of(&g);
    assert_eq!(
        census.tensor_count as u64,
        want["tensor_count"].as_u64().unwrap()
    );
    assert_eq!(
        census.parameter_count,
        want["parameter_count"].as_u64().unwrap()
    );
    let by_type = want["bytes_by_type"].as_object().unwrap();
    assert_eq!(census.bytes_by_type.len(), by_type.len());
    for (ty, bytes) in &census.bytes_by_type {
        assert_eq!(Some(*bytes), by_type[ty.name()].as_u64(), "bytes of {ty}");
    }
    let tensors = want["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), g.tensors().len());
    for (t, w) in g.tensors().iter().zip(tensors) {
        assert_eq!(t.name, w["name"].as_str().unwrap());
        let shape: Vec<u64> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, shape, "shape of {}", t.name);
        assert_eq!(
            t.ty.name(),
            w["type"].as_str().unwrap(),
            "type of {}",
            t.name
        );
        assert_eq!(
            t.offset,
            w["offset"].as_u64().unwrap(),
            "offset of {}",
            t.name
        );
        assert_eq!(
            t.n_bytes,
            w["n_bytes"].as_u64().unwrap(),
            "bytes of {}",
            t.name
        );
        assert_eq!(g.tensor_data(t).len() as u64, t.n_bytes);
    }
    let meta = &want["metadata"];
    assert_eq!(
        g.architecture().unwrap(),
        meta["general.architecture"].as_str().unwrap()
    );
    assert_eq!(
        g.get_str("general.name").unwrap(),
        meta["general.name"].as_str().unwrap()
    );
    assert_eq!(
        g.get_u32("general.file_type").unwrap() as u64,
        meta["general.file_type"].as_u64().unwrap()
    );
    let tokens = g.get_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(
        tokens.len() as u64,
        want["tokens"]["count"].as_u64().unwrap()
    );
    let first: Vec<String> = tokens
        .iter()
        .take(5)
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let want_first: Vec<String> = want["tokens"]["first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(first, want_first);
}

#[test]
fn config_reads_the_published_hyperparameters() {
    let g = Gguf::open(common::real_model()).unwrap();
    let c = Config::from_gguf(&g).unwrap();
    assert_eq!(
        (c.dims.n_layer, c.dims.n_embd, c.dims.n_ff),
        (18, 640, 2048)
    );
    assert_eq!(
        (
            c.dims.n_head,
            c.dims.n_head_kv,
            c.dims.head_dim_k,
            c.dims.head_dim_v
        ),
        (4, 1, 256, 256)
    );
    assert_eq!((c.dims.n_vocab, c.dims.n_ctx_train), (262_144, 32_768));
    assert_eq!(c.sliding_window, Some(512));
    assert_eq!(
        (c.rope_base.global, c.rope_base.local),
        (1_000_000.0, 10_000.0)
    );
    let global: Vec<usize> = (0..18)
        .filter(|&il| c.kind(il) == gemlet::model::LayerKind::Global)
        .collect();
    assert_eq!(global, vec![5, 11, 17]);
    assert_eq!(c.query_scale, 1.0 / 16.0);
    assert!(c.tied_output && c.qk_norm && c.post_norms);
    assert_eq!((c.attn_softcap, c.final_softcap), (None, None));
}
