//! Generating a token allocates nothing: the graph of a one-token batch is built and its
//! buffers allocated once, and reused for every token until the attended cache grows by a
//! padding step (256 slots); inputs are written and logits read through buffers kept in the
//! session. Counted with a global allocator that tallies every Rust allocation (ggml's own
//! buffers are allocated once, at session start and when a graph is built). Choosing the token
//! allocates nothing either, once the sampler's buffer has grown to the vocabulary.

use crate::common;

use crate::alloc_probe::allocations;
use gemlet::model::Model;
use gemlet::sampling::{Sampler, SamplerParams, SplitMix64};
use gemlet::session::{Session, SessionParams};

#[test]
fn generating_a_token_allocates_nothing() {
    for name in ["tiny-gemma-q8_0.gguf", "tiny-gemma3-f32.gguf"] {
        let model = Model::load(common::fixture(&format!("tiny/{name}"))).unwrap();
        let params = SessionParams {
            n_ctx: 128,
            n_batch: 16,
            n_threads: 2,
            ..SessionParams::default()
        };
        let mut s = Session::new(&model, params).unwrap();
        let prompt: Vec<u32> = (0..20).map(|i| 10 + i).collect();
        s.eval(&prompt).unwrap();
        // The first token builds the one-token graph.
        s.eval(&[7]).unwrap();
        let built = s.graphs_built();
        let before = allocations();
        for i in 0..100 {
            s.eval(&[(i % 200 + 10) as u32]).unwrap();
            assert!(!s.logits().is_empty());
        }
        let allocations = allocations() - before;
        eprintln!(
            "{name}: {allocations} allocations over 100 tokens; {} graphs built in all",
            s.graphs_built()
        );
        assert_eq!(allocations, 0, "{name}");
        // 121 positions fit in one padding step of the attended cache: no graph rebuilt.
        assert_eq!(s.graphs_built(), built, "{name}");
    }
}

#[test]
fn a_long_generation_builds_a_graph_per_padding_step() {
    let _one = common::exclusive();
    let model = Model::load(common::real_model()).unwrap();
    let params = SessionParams {
        n_ctx: 1024,
        n_threads: 2,
        ..SessionParams::default()
    };
    let mut s = Session::new(&model, params).unwrap();
    s.eval(&[2, 818, 2255]).unwrap();
    for i in 0..600u32 {
        s.eval(&[1000 + i]).unwrap();
    }
    // The prompt's graph, then one per 256 global slots (3 steps to 603 positions); the local
    // layers' ring saturates at 512 + 512 slots on the way, which shares those steps.
    eprintln!("{} graphs for 601 evaluations", s.graphs_built());
    assert!(s.graphs_built() <= 6, "{}", s.graphs_built());
}

#[test]
fn choosing_a_token_allocates_nothing() {
    // A vocabulary's worth of logits, as gemma3's 262k: the sampler's candidate buffer would
    // be 2 MiB a token if it were allocated each time.
    let mut rng = SplitMix64::new(1);
    let logits: Vec<f32> = (0..262_144)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0)
        .collect();
    let history: Vec<u32> = (0..64).map(|i| (i * 37) % 300).collect();
    let penalties = SamplerParams {
        repeat_penalty: 1.1,
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        ..SamplerParams::default()
    };
    let no_top_k = SamplerParams {
        top_k: 0,
        ..penalties
    };
    for params in [
        SamplerParams::greedy(),
        SamplerParams::default(),
        penalties,
        no_top_k,
    ] {
        let mut sampler = Sampler::new(params);
        sampler.ban(&[1, 106]);
        let first = sampler.sample(&logits, &history);
        let mut ids = Vec::with_capacity(101);
        ids.push(first);
        let before = allocations();
        for _ in 0..100 {
            ids.push(sampler.sample(&logits, &history));
        }
        assert_eq!(allocations() - before, 0, "{params:?}");
        assert!(ids.iter().all(|id| ![1, 106].contains(id)), "{params:?}");
        if params.temp <= 0.0 {
            assert!(
                ids.iter().all(|&id| id == first),
                "greedy is the same every time"
            );
        }
    }
}
