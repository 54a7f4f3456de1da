//! Every ggml op the Gemma graphs use, run through the safe wrapper and compared with a naive
//! Rust implementation (f64 accumulation), on 1 and 2 threads. Each test states its tolerance
//! and why.

use gemlet::ggml::{
    dequantize, quantize, Context, Executor, GgmlError, GraphId, RopeMode, Tensor, TensorId, Type,
};

/// Deterministic values in [-1, 1) (xorshift64*), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        v as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

const THREADS: [usize; 2] = [1, 2];

fn ctx() -> Context<'static> {
    Context::new(64 << 20).unwrap()
}

fn input<'c>(ctx: &'c Context, shape: &[usize], values: &[f32], name: &str) -> Tensor<'c> {
    let t = ctx.new_tensor(Type::F32, shape, name).unwrap();
    t.write_f32(values).unwrap();
    t
}

/// Builds a graph for `out`, computes it on `threads` threads, returns its values.
fn compute(ctx: &Context, out: Tensor<'_>, threads: usize) -> Vec<f32> {
    let mut graph = ctx.new_graph(64).unwrap();
    graph.expand(out);
    let mut exec = Executor::new(threads).unwrap();
    exec.compute(&graph).unwrap();
    out.read_f32().unwrap()
}

/// ||got - want|| / ||want||.
fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "result length");
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den).sqrt()
}

fn max_abs(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "result length");
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max)
}

/// Weights of `ty` as ggml stores them, and the values the reference multiplies with: ggml's own
/// dequantization of those bytes, so the test isolates the matmul kernel from quantization error.
fn weights(ty: Type, values: &[f32], k: usize) -> (Vec<u8>, Vec<f32>) {
    let bytes = quantize(ty, values, k).unwrap();
    let deq = dequantize(ty, &bytes, values.len()).unwrap();
    (bytes, deq)
}

#[test]
fn mul_mat_all_weight_types() {
    // Tolerances (relative L2 over the output): the kernels convert the activations to the
    // weight type's "vec_dot" type before the dot product: F32 stays F32 (only summation order
    // differs: 1e-5); F16 rounds activations to 11 bits (~5e-4 relative per element) and BF16 to
    // 8 bits (~4e-3); quantized weights take Q8_0/Q8_1/Q8_K activations (8-bit with a per-block
    // scale: ~1e-2 in the worst block, far less on average).
    let cases = [
        (Type::F32, 1e-5),
        (Type::F16, 2e-3),
        (Type::BF16, 1e-2),
        (Type::Q8_0, 1e-2),
        (Type::Q4_0, 1e-2),
        (Type::Q4_1, 1e-2),
        (Type::Q5_0, 1e-2),
        (Type::Q5_1, 1e-2),
        (Type::Q4_K, 1e-2),
        (Type::Q5_K, 1e-2),
        (Type::Q6_K, 1e-2),
    ];
    // K = 512 is whole blocks for every type (K-quants need 256); 13 output rows is odd, so
    // the kernels' row tiling has a remainder; batches of 1 (token generation) and 7 (prompt).
    let (k, n) = (512, 13);
    let mut rng = Rng::new(1);
    let w_values = rng.vec(k * n);
    for (ty, tol) in cases {
        let (bytes, w) = weights(ty, &w_values, k);
        for m in [1, 7] {
            let x = rng.vec(k * m);
            let want: Vec<f64> = (0..m)
                .flat_map(|j| {
                    let (x, w) = (&x, &w);
                    (0..n).map(move |i| {
                        (0..k)
                            .map(|p| w[i * k + p] as f64 * x[j * k + p] as f64)
                            .sum()
                    })
                })
                .collect();
            for threads in THREADS {
                let ctx = ctx();
                let wt = ctx.new_tensor(ty, &[k, n], "w").unwrap();
                wt.write_bytes(&bytes).unwrap();
                let xt = input(&ctx, &[k, m], &x, "x");
                let out = ctx.mul_mat(wt, xt);
                assert_eq!(out.shape(), [n, m, 1, 1]);
                let got = compute(&ctx, out, threads);
                let err = rel_l2(&got, &want);
                eprintln!("mul_mat {ty} m={m} threads={threads}: rel L2 {err:.1e} (tol {tol:.0e})");
                assert!(
                    err <= tol,
                    "{ty} m={m} threads={threads}: rel L2 {err:e} > {tol:e}"
                );
            }
        }
    }
}

#[test]
fn mul_mat_borrowed_weights_match_owned() {
    // The model's weights are tensors over the memory map; the kernel must see them the same.
    let (k, n, m) = (256, 5, 3);
    let mut rng = Rng::new(2);
    let (bytes, w) = weights(Type::Q4_K, &rng.vec(k * n), k);
    let x = rng.vec(k * m);
    let wctx = Context::metadata_only(1, 0).unwrap();
    let wt = wctx
        .tensor_from_bytes(Type::Q4_K, &[k, n], "w", &bytes)
        .unwrap();
    let ctx = ctx();
    let out = ctx.mul_mat(wt, input(&ctx, &[k, m], &x, "x"));
    let want: Vec<f64> = (0..m)
        .flat_map(|j| (0..n).map(move |i| (j, i)))
        .map(|(j, i)| {
            (0..k)
                .map(|p| w[i * k + p] as f64 * x[j * k + p] as f64)
                .sum()
        })
        .collect();
    for threads in THREADS {
        let err = rel_l2(&compute(&ctx, out, threads), &want);
        assert!(err <= 1e-2, "threads={threads}: {err:e}");
    }
}

#[test]
fn get_rows_of_quantized_rows() {
    // ggml's get_rows dequantizes each row with the same to_float routine: equal to the bit.
    let (k, rows) = (256, 9);
    let ids = [3, 0, 8, 3];
    let mut rng = Rng::new(3);
    for ty in [
        Type::F16,
        Type::Q8_0,
        Type::Q4_0,
        Type::Q5_0,
        Type::Q4_K,
        Type::Q6_K,
    ] {
        let (bytes, w) = weights(ty, &rng.vec(k * rows), k);
        let want: Vec<f64> = ids
            .iter()
            .flat_map(|&r| w[r * k..(r + 1) * k].iter().map(|&v| v as f64))
            .collect();
        for threads in THREADS {
            let ctx = ctx();
            let wt = ctx.new_tensor(ty, &[k, rows], "emb").unwrap();
            wt.write_bytes(&bytes).unwrap();
            let idx = ctx.new_tensor(Type::I32, &[ids.len()], "ids").unwrap();
            idx.write_i32(&ids.map(|i| i as i32)).unwrap();
            let out = ctx.get_rows(wt, idx);
            assert_eq!(out.shape(), [k, ids.len(), 1, 1]);
            let got = compute(&ctx, out, threads);
            assert_eq!(max_abs(&got, &want), 0.0, "{ty} threads={threads}");
        }
    }
}

#[test]
fn rms_norm_rows() {
    // f32 sum of squares over 640 values vs f64: relative error ~1e-6.
    let (d, rows, eps) = (640, 5, 1e-6f32);
    let x = Rng::new(4).vec(d * rows);
    let want: Vec<f64> = x
        .chunks(d)
        .flat_map(|r| {
            let ms = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
            let s = 1.0 / (ms + eps as f64).sqrt();
            r.iter().map(move |&v| v as f64 * s)
        })
        .collect();
    for threads in THREADS {
        let ctx = ctx();
        let out = ctx.rms_norm(input(&ctx, &[d, rows], &x, "x"), eps);
        let err = rel_l2(&compute(&ctx, out, threads), &want);
        assert!(err <= 1e-5, "threads={threads}: {err:e}");
    }
}

#[test]
fn mul_and_add_broadcast() {
    // One f32 operation per element: exact up to the last bit of rounding (1e-6 relative).
    let a_shape = [8, 3, 2];
    let mut rng = Rng::new(5);
    let a = rng.vec(48);
    for b_shape in [[8usize, 1, 1], [8, 3, 1], [8, 1, 2], [1, 1, 1]] {
        let b = rng.vec(b_shape.iter().product());
        let bi = |i0: usize, i1: usize, i2: usize| {
            b[(i2 % b_shape[2]) * b_shape[1] * b_shape[0]
                + (i1 % b_shape[1]) * b_shape[0]
                + i0 % b_shape[0]] as f64
        };
        let mut want_mul = Vec::new();
        let mut want_add = Vec::new();
        for i2 in 0..2 {
            for i1 in 0..3 {
                for i0 in 0..8 {
                    let av = a[i2 * 24 + i1 * 8 + i0] as f64;
                    want_mul.push(av * bi(i0, i1, i2));
                    want_add.push(av + bi(i0, i1, i2));
                }
            }
        }
        for threads in THREADS {
            let ctx = ctx();
            let at = input(&ctx, &a_shape, &a, "a");
            let bt = input(&ctx, &b_shape, &b, "b");
            let got = compute(&ctx, ctx.mul(at, bt), threads);
            assert!(rel_l2(&got, &want_mul) <= 1e-6, "mul {b_shape:?}");
            let got = compute(&ctx, ctx.add(at, bt), threads);
            assert!(rel_l2(&got, &want_add) <= 1e-6, "add {b_shape:?}");
        }
    }
}

#[test]
fn rope_neox_two_bases() {
    // NEOX rope rotates (x[i], x[i + d/2]) by pos * base^(-2i/d). ggml builds the angle by
    // repeated f32 multiplication; at position 511 an angle error of a few ulps of ~500 rad
    // moves the result by ~1e-4, hence 5e-4 absolute on values in [-1, 1].
    let (d, heads, positions) = (64, 3, [0i32, 1, 7, 100, 511]);
    let x = Rng::new(6).vec(d * heads * positions.len());
    for base in [10_000.0f32, 1_000_000.0] {
        let mut want = vec![0f64; x.len()];
        for (t, &pos) in positions.iter().enumerate() {
            for h in 0..heads {
                let o = (t * heads + h) * d;
                for i in 0..d / 2 {
                    let theta = pos as f64 * (base as f64).powf(-2.0 * i as f64 / d as f64);
                    let (x0, x1) = (x[o + i] as f64, x[o + i + d / 2] as f64);
                    want[o + i] = x0 * theta.cos() - x1 * theta.sin();
                    want[o + i + d / 2] = x0 * theta.sin() + x1 * theta.cos();
                }
            }
        }
        for threads in THREADS {
            let ctx = ctx();
            let xt = input(&ctx, &[d, heads, positions.len()], &x, "x");
            let pos = ctx
                .new_tensor(Type::I32, &[positions.len()], "pos")
                .unwrap();
            pos.write_i32(&positions).unwrap();
            let out = ctx.rope(xt, pos, d, RopeMode::Neox, base, 1.0, None);
            let err = max_abs(&compute(&ctx, out, threads), &want);
            assert!(err <= 5e-4, "base {base} threads={threads}: {err:e}");
        }
    }
}

/// Causal mask for `n_q` queries that are the last `n_q` of `n_kv` positions: 0 where the
/// key is visible, -inf where it lies in the future.
fn causal_mask(n_kv: usize, n_q: usize) -> Vec<f32> {
    let mut m = vec![0f32; n_kv * n_q];
    for q in 0..n_q {
        for kv in 0..n_kv {
            if kv > n_kv - n_q + q {
                m[q * n_kv + kv] = f32::NEG_INFINITY;
            }
        }
    }
    m
}

#[test]
fn soft_max_ext_with_causal_mask_and_scale() {
    // exp/sum in f32 (ggml uses its own vectorised expf): 1e-6 relative per element.
    let (n_kv, n_q, heads, scale) = (6, 4, 2, 0.125f32);
    let a = Rng::new(7)
        .vec(n_kv * n_q * heads)
        .iter()
        .map(|v| v * 8.0)
        .collect::<Vec<_>>();
    let mask = causal_mask(n_kv, n_q);
    let want: Vec<f64> = a
        .chunks(n_kv)
        .enumerate()
        .flat_map(|(row, r)| {
            let q = row % n_q;
            let logits: Vec<f64> = r
                .iter()
                .enumerate()
                .map(|(kv, &v)| v as f64 * scale as f64 + mask[q * n_kv + kv] as f64)
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            logits.into_iter().map(move |l| (l - max).exp() / sum)
        })
        .collect();
    for threads in THREADS {
        let ctx = ctx();
        let at = input(&ctx, &[n_kv, n_q, heads], &a, "kq");
        let mt = ctx.new_tensor(Type::F16, &[n_kv, n_q], "mask").unwrap();
        mt.write_f32_as_f16(&mask).unwrap();
        let got = compute(&ctx, ctx.soft_max_ext(at, Some(mt), scale), threads);
        let err = max_abs(&got, &want);
        assert!(err <= 1e-6, "threads={threads}: {err:e}");
        // Masked (future) positions get exactly zero weight.
        for q in 0..n_q {
            for kv in n_kv - n_q + q + 1..n_kv {
                assert_eq!(got[q * n_kv + kv], 0.0);
            }
        }
    }
}

#[test]
fn gelu_tanh_approximation() {
    // ggml evaluates GELU through a table indexed by the input rounded to f16 and stores f16
    // outputs: up to ~1e-3 relative, so 2e-3 * max(1, |x|).
    let x: Vec<f32> = Rng::new(8).vec(1000).iter().map(|v| v * 12.0).collect();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| {
            let v = v as f64;
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * v * (1.0 + (c * (v + 0.044715 * v.powi(3))).tanh())
        })
        .collect();
    for threads in THREADS {
        let ctx = ctx();
        let got = compute(&ctx, ctx.gelu(input(&ctx, &[1000], &x, "x")), threads);
        for ((g, w), xv) in got.iter().zip(&want).zip(&x) {
            let tol = 2e-3 * (xv.abs() as f64).max(1.0);
            assert!((*g as f64 - w).abs() <= tol, "gelu({xv}) = {g}, want {w}");
        }
    }
}

#[test]
fn scale_and_tanh() {
    // One f32 operation per element (tanh: libm/vectorised tanhf, a few ulps): 1e-6 absolute.
    let x: Vec<f32> = Rng::new(9).vec(257).iter().map(|v| v * 5.0).collect();
    let want_scale: Vec<f64> = x.iter().map(|&v| v as f64 * 0.03125).collect();
    let want_tanh: Vec<f64> = x.iter().map(|&v| (v as f64).tanh()).collect();
    for threads in THREADS {
        let ctx = ctx();
        let xt = input(&ctx, &[257], &x, "x");
        assert!(max_abs(&compute(&ctx, ctx.scale(xt, 0.03125), threads), &want_scale) <= 1e-6);
        assert!(max_abs(&compute(&ctx, ctx.tanh(xt), threads), &want_tanh) <= 1e-6);
        // Gemma 2's soft-cap: cap * tanh(x / cap).
        let cap = 30.0f32;
        let capped = ctx.scale(ctx.tanh(ctx.scale(xt, 1.0 / cap)), cap);
        let want: Vec<f64> = x.iter().map(|&v| 30.0 * (v as f64 / 30.0).tanh()).collect();
        assert!(max_abs(&compute(&ctx, capped, threads), &want) <= 1e-5);
    }
}

#[test]
fn copy_into_view_of_cache() {
    // Writing new K/V rows into an F16 cache: the f32 -> f16 conversion is ggml's round to
    // nearest, so the expected bytes are our f16 conversion of the inputs, exactly; every other
    // row of the cache must be untouched.
    let (d, slots, start, n) = (64, 10, 4, 3);
    let src = Rng::new(10).vec(d * n);
    for threads in THREADS {
        let ctx = ctx();
        let cache = ctx.new_tensor(Type::F16, &[d, slots], "cache_k").unwrap();
        cache.write_bytes(&vec![0u8; d * slots * 2]).unwrap();
        let row_bytes = cache.strides()[1];
        let view = ctx.view(cache, &[d, n], &[row_bytes], start * row_bytes);
        let st = input(&ctx, &[d, n], &src, "k_new");
        let cpy = ctx.cpy(st, view).unwrap();
        compute(&ctx, cpy, threads);
        let got = cache.read_f32().unwrap();
        for slot in 0..slots {
            for i in 0..d {
                let g = got[slot * d + i];
                if (start..start + n).contains(&slot) {
                    let v = src[(slot - start) * d + i];
                    assert_eq!(g, gemlet::ggml::f16_to_f32(gemlet::ggml::f32_to_f16(v)));
                } else {
                    assert_eq!(g, 0.0, "slot {slot} was written");
                }
            }
        }
    }
}

#[test]
fn flash_attn_ext_matches_naive_attention() {
    // Grouped-query attention: 4 query heads share 2 KV heads. K and V are F16 (as in the
    // cache) and ggml rounds Q to F16 and accumulates V in F16/F32: ~2e-3 absolute on outputs
    // in [-1, 1]. Checked without and with Gemma 2's logit soft-cap.
    let (d, n_q, n_kv, heads, kv_heads) = (64, 3, 8, 4, 2);
    let mut rng = Rng::new(11);
    let q = rng.vec(d * n_q * heads);
    let k = rng.vec(d * n_kv * kv_heads);
    let v = rng.vec(d * n_kv * kv_heads);
    let round = |x: &[f32]| -> Vec<f32> {
        x.iter()
            .map(|&v| gemlet::ggml::f16_to_f32(gemlet::ggml::f32_to_f16(v)))
            .collect()
    };
    let (k16, v16) = (round(&k), round(&v));
    let mask = causal_mask(n_kv, n_q);
    let scale = 1.0 / (d as f32).sqrt();
    for softcap in [0.0f32, 2.0] {
        // Result layout: (d, heads, n_q).
        let mut want = vec![0f64; d * heads * n_q];
        for t in 0..n_q {
            for h in 0..heads {
                let kh = h / (heads / kv_heads);
                let qo = (h * n_q + t) * d;
                let mut logits: Vec<f64> = (0..n_kv)
                    .map(|j| {
                        let ko = (kh * n_kv + j) * d;
                        let dot: f64 = (0..d).map(|i| q[qo + i] as f64 * k16[ko + i] as f64).sum();
                        let mut s = dot * scale as f64;
                        if softcap > 0.0 {
                            s = softcap as f64 * (s / softcap as f64).tanh();
                        }
                        s + mask[t * n_kv + j] as f64
                    })
                    .collect();
                let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                logits.iter_mut().for_each(|l| *l = (*l - max).exp() / sum);
                for i in 0..d {
                    want[(t * heads + h) * d + i] = (0..n_kv)
                        .map(|j| logits[j] * v16[(kh * n_kv + j) * d + i] as f64)
                        .sum();
                }
            }
        }
        for threads in THREADS {
            let ctx = ctx();
            let qt = input(&ctx, &[d, n_q, heads], &q, "q");
            let kt = ctx
                .new_tensor(Type::F16, &[d, n_kv, kv_heads], "k")
                .unwrap();
            kt.write_f32_as_f16(&k).unwrap();
            let vt = ctx
                .new_tensor(Type::F16, &[d, n_kv, kv_heads], "v")
                .unwrap();
            vt.write_f32_as_f16(&v).unwrap();
            let mt = ctx.new_tensor(Type::F16, &[n_kv, n_q], "mask").unwrap();
            mt.write_f32_as_f16(&mask).unwrap();
            let out = ctx.flash_attn_ext(qt, kt, vt, Some(mt), scale, softcap);
            assert_eq!(out.shape(), [d, heads, n_q, 1]);
            let err = max_abs(&compute(&ctx, out, threads), &want);
            assert!(err <= 2e-3, "softcap {softcap} threads={threads}: {err:e}");
        }
    }
}

#[test]
fn graph_with_unallocated_tensor_is_an_error() {
    let ctx = Context::metadata_only(4, 16).unwrap();
    let a = ctx.new_tensor(Type::F32, &[4], "a").unwrap();
    let out = ctx.scale(a, 2.0);
    let mut g = ctx.new_graph(16).unwrap();
    g.expand(out);
    let err = Executor::new(1).unwrap().compute(&g).unwrap_err();
    assert!(err.to_string().contains("no memory"), "{err}");
}

/// The misuse the allocator's tickets exist for: two graphs kept as handles beside their
/// contexts, the second allocated after the first (the compute buffer grows, the first
/// graph's memory is freed), then the first computed. It is refused, not run on freed memory;
/// allocated again, it computes.
#[test]
fn a_graph_allocated_before_the_latest_one_is_refused() {
    use gemlet::ggml::Allocator;
    // One graph of n elements: a metadata-only context whose tensors the allocator places.
    fn graph(n: usize) -> (Context<'static>, GraphId, TensorId, TensorId) {
        let ctx = Context::metadata_only(4, 16).unwrap();
        let (g, a, out) = {
            let a = ctx.new_tensor(Type::F32, &[n], "a").unwrap().set_input();
            let out = ctx.scale(a, 2.0).set_output();
            let mut g = ctx.new_graph(16).unwrap();
            g.expand(out);
            (ctx.graph_id(&g), ctx.id_of(a), ctx.id_of(out))
        };
        (ctx, g, a, out)
    }
    let mut alloc = Allocator::new().unwrap();
    let mut exec = Executor::new(1).unwrap();
    let (small, g1, a1, out1) = graph(4);
    let (big, g2, _, _) = graph(1 << 20);

    alloc.alloc_graph(&small.resolve_graph(g1)).unwrap();
    small.resolve(a1).write_f32(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    exec.compute(&small.resolve_graph(g1)).unwrap();
    assert_eq!(
        small.resolve(out1).read_f32().unwrap(),
        [2.0, 4.0, 6.0, 8.0]
    );

    alloc.alloc_graph(&big.resolve_graph(g2)).unwrap();
    let err = exec.compute(&small.resolve_graph(g1)).unwrap_err();
    assert!(matches!(err, GgmlError::StaleGraph), "{err}");
    assert!(err.to_string().contains("allocate it again"), "{err}");

    alloc.alloc_graph(&small.resolve_graph(g1)).unwrap();
    small.resolve(a1).write_f32(&[1.0, 1.0, 1.0, 1.0]).unwrap();
    exec.compute(&small.resolve_graph(g1)).unwrap();
    assert_eq!(small.resolve(out1).read_f32().unwrap(), [2.0; 4]);
    let err = exec.compute(&big.resolve_graph(g2)).unwrap_err();
    assert!(matches!(err, GgmlError::StaleGraph), "{err}");

    // A dropped allocator's graphs are stale too.
    drop(alloc);
    let err = exec.compute(&small.resolve_graph(g1)).unwrap_err();
    assert!(matches!(err, GgmlError::StaleGraph), "{err}");
}

/// `Type::has_cpu_matmul`, which decides the weight types a model may have, is exactly the list
/// of types whose entry in the vendored ggml's `type_traits_cpu` has a `vec_dot` kernel.
#[test]
fn cpu_matmul_types_are_the_vendored_ggml_s() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vendor/ggml/src/ggml-cpu/ggml-cpu.c"
    ))
    .unwrap();
    let table = &src[src.find("type_traits_cpu[GGML_TYPE_COUNT] = {").unwrap()..];
    let table = &table[..table.find("\n};").unwrap()];
    let mut vendored: Vec<String> = table
        .split("[GGML_TYPE_")
        .skip(1)
        .filter(|entry| entry.contains(".vec_dot ") || entry.contains(".vec_dot="))
        .map(|entry| entry.split(']').next().unwrap().to_lowercase())
        .collect();
    let mut ours: Vec<String> = Type::ALL
        .iter()
        .filter(|t| t.has_cpu_matmul())
        .map(|t| t.name().to_lowercase())
        .collect();
    vendored.sort();
    ours.sort();
    assert_eq!(ours, vendored);
}

/// `Type::can_quantize` is exactly the list of types `ggml_quantize_chunk` in the vendored
/// ggml.c has a case for (it aborts on any other).
#[test]
fn quantizable_types_are_the_vendored_ggml_s() {
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vendor/ggml/src/ggml.c"
    ))
    .unwrap();
    let body = &src[src.find("size_t ggml_quantize_chunk(").unwrap()..];
    let body = &body[..body.find("\n}").unwrap()];
    let mut vendored: Vec<String> = body
        .split("case GGML_TYPE_")
        .skip(1)
        .map(|case| case.split(':').next().unwrap().trim().to_lowercase())
        .collect();
    let mut ours: Vec<String> = Type::ALL
        .iter()
        .filter(|t| t.can_quantize())
        .map(|t| t.name().to_lowercase())
        .collect();
    vendored.sort();
    ours.sort();
    assert_eq!(ours, vendored);
}
