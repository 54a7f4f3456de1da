//! Time per token of the sampler chains on the real model's logits (262,144 of them).
//!
//! usage: cargo run --release --example sampler_speed [MODEL]

use gemlet::model::Model;
use gemlet::sampling::{Sampler, SamplerParams};
use gemlet::session::{Session, SessionParams};
use std::time::Instant;

fn main() {
    let home = std::env::var("HOME").unwrap_or_default();
    let path = std::env::args().nth(1).unwrap_or(format!(
        "{home}/.cache/gemlet/models/gemma-3-270m-q4_k_m.gguf"
    ));
    let model = Model::load(&path).expect("load model");
    let mut session = Session::new(&model, SessionParams::default()).expect("session");
    let prompt = model
        .tokenizer()
        .encode("The capital of France is", true, false)
        .expect("tokenize");
    session.eval(&prompt).expect("eval");
    let logits = session.logits().to_vec();
    let history: Vec<u32> = prompt.iter().copied().cycle().take(64).collect();

    let chains = [
        ("greedy", SamplerParams::greedy()),
        ("llama.cpp's defaults", SamplerParams::default()),
        (
            "defaults + repeat penalty 1.1",
            SamplerParams {
                repeat_penalty: 1.1,
                ..SamplerParams::default()
            },
        ),
        (
            "no top-k (top-p 0.95, min-p 0.05)",
            SamplerParams {
                top_k: 0,
                ..SamplerParams::default()
            },
        ),
    ];
    const N: usize = 300;
    for (name, params) in chains {
        let mut s = Sampler::new(params);
        s.sample(&logits, &history);
        let t = Instant::now();
        for _ in 0..N {
            std::hint::black_box(s.sample(&logits, &history));
        }
        let ms = t.elapsed().as_secs_f64() * 1e3 / N as f64;
        println!("{name:36} {ms:.3} ms per token");
    }
}
