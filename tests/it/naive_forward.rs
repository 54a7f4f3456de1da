//! An independent forward pass of the three Gemma graphs in plain Rust loops (no ggml: its own
//! dequantizers, f64 accumulation, keys read straight from the metadata), run on the tiny
//! F32/F16/Q8_0/Q4_0 models and compared with llama.cpp's logits and with gemlet's.
//!
//! It emulates the roundings ggml's CPU path makes on purpose: the F16 KV cache, GELU through
//! an F16 table, and activations converted to F16 (F16 weights) or quantized to Q8_0 (Q8_0/Q4_0
//! weights) before a matmul. What it does not emulate (flash attention's F16 query and F16
//! accumulation, summation order) bounds the agreement: max |Δ| 2e-2 for F32/F16 weights, 0.25
//! with mean 0.04 for quantized ones (where a flipped activation rounding step propagates),
//! the tolerances tests/fixtures/tiny/README.md derives from llama.cpp's own variation.

use crate::common;

use gemlet::ggml::Type;
use gemlet::gguf::Gguf;
use gemlet::model::Model;
use gemlet::session::{Session, SessionParams};
use serde_json::Value as Json;

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 if frac == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + frac / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Round to the nearest f16 value (ties to even), returned as f32.
fn round_f16(x: f32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let e = x.abs().log2().floor().max(-14.0);
    let step = 2f32.powf(e - 10.0);
    let q = x / step;
    let r = q.round();
    let r = if (q - q.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - q.signum()
    } else {
        r
    };
    (r * step).clamp(-65504.0, 65504.0)
}

/// A weight matrix: rows of `cols` values, and how ggml rounds the activations it meets.
struct Matrix {
    rows: usize,
    cols: usize,
    w: Vec<f32>,
    ty: Type,
}

fn dequantize(ty: Type, b: &[u8], n: usize) -> Vec<f32> {
    let h = |i: usize| f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]));
    match ty {
        Type::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Type::F16 => (0..n).map(|i| h(2 * i)).collect(),
        Type::Q8_0 => (0..n)
            .map(|i| h(34 * (i / 32)) * b[34 * (i / 32) + 2 + i % 32] as i8 as f32)
            .collect(),
        Type::Q4_0 => (0..n)
            .map(|i| {
                let o = 18 * (i / 32);
                let j = i % 32;
                let byte = b[o + 2 + j % 16];
                let q = if j < 16 { byte & 0xf } else { byte >> 4 };
                h(o) * (q as f32 - 8.0)
            })
            .collect(),
        other => panic!("no naive dequantizer for {other}"),
    }
}

/// Activations as the matmul kernel sees them.
fn round_activations(ty: Type, x: &[f32]) -> Vec<f32> {
    match ty {
        Type::F32 => x.to_vec(),
        Type::F16 => x.iter().map(|&v| round_f16(v)).collect(),
        // Q8_0 blocks of 32: d = amax/127 stored as f16, q = round(x / d).
        _ => x
            .chunks(32)
            .flat_map(|blk| {
                let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let d16 = round_f16(d);
                blk.iter().map(move |&v| (v * id).round() * d16)
            })
            .collect(),
    }
}

impl Matrix {
    fn mul(&self, x: &[f32]) -> Vec<f32> {
        let x = round_activations(self.ty, x);
        (0..self.rows)
            .map(|r| {
                let row = &self.w[r * self.cols..(r + 1) * self.cols];
                row.iter()
                    .zip(&x)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }
}

struct Naive {
    g: Gguf,
    arch: String,
}

impl Naive {
    fn u(&self, k: &str) -> usize {
        self.g.get_u32(&format!("{}.{k}", self.arch)).unwrap() as usize
    }
    fn f(&self, k: &str) -> Option<f32> {
        self.g.get_f32(&format!("{}.{k}", self.arch)).ok()
    }
    fn tensor(&self, name: &str) -> Matrix {
        let t = self.g.tensor(name).unwrap_or_else(|| panic!("{name}"));
        let n = t.n_elements() as usize;
        Matrix {
            rows: *t.dims.get(1).unwrap_or(&1) as usize,
            cols: t.dims[0] as usize,
            w: dequantize(t.ty, self.g.tensor_data(t), n),
            ty: t.ty,
        }
    }

    /// Logits for every position of `tokens`.
    fn forward(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let (n_layer, e) = (self.u("block_count"), self.u("embedding_length"));
        let (h, hkv) = (
            self.u("attention.head_count"),
            self.u("attention.head_count_kv"),
        );
        let d = self.u("attention.key_length");
        let eps = self.f("attention.layer_norm_rms_epsilon").unwrap();
        let gemma2 = self.arch == "gemma2";
        let gemma3 = self.arch == "gemma3";
        let window = self
            .g
            .get_u32(&format!("{}.attention.sliding_window", self.arch))
            .ok()
            .map(|w| w as usize);
        let local = |il: usize| match self.arch.as_str() {
            "gemma2" => il % 2 == 0,
            "gemma3" => window.is_some() && il % 6 < 5,
            _ => false,
        };
        let base_global = self.f("rope.freq_base").unwrap_or(10000.0) as f64;
        let attn_cap = if gemma2 {
            self.f("attn_logit_softcapping")
        } else {
            None
        };
        let final_cap = if gemma2 || gemma3 {
            self.f("final_logit_softcapping")
        } else {
            None
        };

        let rms = |x: &[f32], w: &[f32]| -> Vec<f32> {
            let ms = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            x.iter()
                .zip(w)
                .map(|(&v, &g)| (v as f64 * s) as f32 * g)
                .collect()
        };
        let rope = |x: &mut [f32], pos: usize, base: f64| {
            for i in 0..d / 2 {
                let theta = pos as f64 * base.powf(-2.0 * i as f64 / d as f64);
                let (a, b) = (x[i] as f64, x[i + d / 2] as f64);
                x[i] = (a * theta.cos() - b * theta.sin()) as f32;
                x[i + d / 2] = (a * theta.sin() + b * theta.cos()) as f32;
            }
        };
        let gelu = |x: f32| -> f32 {
            if x <= -10.0 {
                return 0.0;
            }
            if x >= 10.0 {
                return x;
            }
            let v = round_f16(x) as f64;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            round_f16((0.5 * v * (1.0 + (c * (v + 0.044715 * v.powi(3))).tanh())) as f32)
        };

        let emb = self.tensor("token_embd.weight");
        let out_norm = self.tensor("output_norm.weight").w;
        let blk = |il: usize, t: &str| self.tensor(&format!("blk.{il}.{t}.weight"));
        let layers: Vec<_> = (0..n_layer)
            .map(|il| {
                (
                    blk(il, "attn_norm").w,
                    [
                        blk(il, "attn_q"),
                        blk(il, "attn_k"),
                        blk(il, "attn_v"),
                        blk(il, "attn_output"),
                    ],
                    [blk(il, "ffn_norm").w],
                    [blk(il, "ffn_gate"), blk(il, "ffn_up"), blk(il, "ffn_down")],
                    (gemma2 || gemma3)
                        .then(|| (blk(il, "post_attention_norm").w, blk(il, "post_ffw_norm").w)),
                    gemma3.then(|| (blk(il, "attn_q_norm").w, blk(il, "attn_k_norm").w)),
                )
            })
            .collect();
        // keys[il][pos], values[il][pos]: hkv * d values, rounded to f16 like the cache.
        let mut keys = vec![Vec::<Vec<f32>>::new(); n_layer];
        let mut values = vec![Vec::<Vec<f32>>::new(); n_layer];
        let mut all_logits = Vec::new();
        for (pos, &tok) in tokens.iter().enumerate() {
            let mut x: Vec<f32> = emb.w[tok as usize * e..(tok as usize + 1) * e]
                .iter()
                .map(|&v| v * (e as f32).sqrt())
                .collect();
            for (il, (an, [wq, wk, wv, wo], [fnorm], [wg, wu, wd], post, qk)) in
                layers.iter().enumerate()
            {
                let base = if local(il) { 10000.0 } else { base_global };
                let hn = rms(&x, an);
                let mut q = wq.mul(&hn);
                let mut k = wk.mul(&hn);
                let v = wv.mul(&hn);
                for head in 0..h {
                    let qh = &mut q[head * d..(head + 1) * d];
                    if let Some((qn, _)) = qk {
                        let r = rms(qh, qn);
                        qh.copy_from_slice(&r);
                    }
                    rope(qh, pos, base);
                }
                for head in 0..hkv {
                    let kh = &mut k[head * d..(head + 1) * d];
                    if let Some((_, kn)) = qk {
                        let r = rms(kh, kn);
                        kh.copy_from_slice(&r);
                    }
                    rope(kh, pos, base);
                }
                keys[il].push(k.iter().map(|&v| round_f16(v)).collect());
                values[il].push(v.iter().map(|&v| round_f16(v)).collect());
                let scale = 1.0 / (d as f64).sqrt();
                let mut att = vec![0f32; h * d];
                for head in 0..h {
                    let kvh = head / (h / hkv);
                    let visible: Vec<usize> = (0..=pos)
                        .filter(|&p| !local(il) || window.is_none_or(|w| pos - p < w))
                        .collect();
                    let mut s: Vec<f64> = visible
                        .iter()
                        .map(|&p| {
                            let dot: f64 = (0..d)
                                .map(|i| {
                                    (q[head * d + i] as f64 * scale)
                                        * keys[il][p][kvh * d + i] as f64
                                })
                                .sum();
                            attn_cap.map_or(dot, |c| c as f64 * (dot / c as f64).tanh())
                        })
                        .collect();
                    let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = s
                        .iter_mut()
                        .map(|v| {
                            *v = (*v - max).exp();
                            *v
                        })
                        .sum();
                    for i in 0..d {
                        att[head * d + i] = visible
                            .iter()
                            .zip(&s)
                            .map(|(&p, &w)| w / sum * values[il][p][kvh * d + i] as f64)
                            .sum::<f64>() as f32;
                    }
                }
                let mut a = wo.mul(&att);
                if let Some((pa, _)) = post {
                    a = rms(&a, pa);
                }
                x.iter_mut().zip(&a).for_each(|(x, a)| *x += a);
                let hn = rms(&x, fnorm);
                let g = wg.mul(&hn);
                let u = wu.mul(&hn);
                let gu: Vec<f32> = g.iter().zip(&u).map(|(&g, &u)| gelu(g) * u).collect();
                let mut f = wd.mul(&gu);
                if let Some((_, pf)) = post {
                    f = rms(&f, pf);
                }
                x.iter_mut().zip(&f).for_each(|(x, f)| *x += f);
            }
            let xn = rms(&x, &out_norm);
            let mut logits = emb.mul(&xn);
            if let Some(c) = final_cap {
                logits.iter_mut().for_each(|l| *l = c * (*l / c).tanh());
            }
            all_logits.push(logits);
        }
        all_logits
    }
}

fn max_mean(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32) {
    let d: Vec<f32> = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .collect();
    (
        d.iter().cloned().fold(0.0, f32::max),
        d.iter().sum::<f32>() / d.len() as f32,
    )
}

#[test]
fn naive_forward_agrees_with_llama_cpp_and_gemlet() {
    for arch in ["gemma", "gemma2", "gemma3"] {
        for variant in ["f32", "f16", "q8_0", "q4_0"] {
            let path = common::fixture(&format!("tiny/tiny-{arch}-{variant}.gguf"));
            let reference: Json = serde_json::from_str(
                &std::fs::read_to_string(path.with_extension("logits.json")).unwrap(),
            )
            .unwrap();
            let tokens = common::json_ids(&reference["token_ids"]);
            let want = common::json_rows(&reference["logits"]);
            let naive = Naive {
                g: Gguf::open(&path).unwrap(),
                arch: arch.into(),
            }
            .forward(&tokens);

            let model = Model::load(&path).unwrap();
            let mut s = Session::new(
                &model,
                SessionParams {
                    n_ctx: 64,
                    n_batch: 64,
                    n_threads: 1,
                    ..SessionParams::default()
                },
            )
            .unwrap();
            s.eval_all(&tokens).unwrap();
            let ours: Vec<Vec<f32>> = s.logits().chunks(512).map(|c| c.to_vec()).collect();

            let (tol_max, tol_mean) = if variant.starts_with('f') {
                (2e-2, 2e-2)
            } else {
                (0.25, 0.04)
            };
            for (who, other) in [("llama.cpp", &want), ("gemlet", &ours)] {
                let (max, mean) = max_mean(&naive, other);
                eprintln!("{arch}-{variant}: naive vs {who}: max {max:.2e} mean {mean:.2e}");
                assert!(
                    max <= tol_max && mean <= tol_mean,
                    "{arch}-{variant} vs {who}: max {max} mean {mean}"
                );
            }
        }
    }
}
