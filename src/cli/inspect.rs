//! `gemlet inspect FILE`: what a model file holds and what running it will take.

use super::fmt::{bytes, short_count, thousands};
use super::CliError;
use crate::gguf::{file_type_name, Gguf, Value};
use crate::model::kv_cache::{CacheLayout, ContextSize};
use crate::model::{Census, Component, Config, Dims, LayerKind, MemoryPlan, RowTable};
use serde_json::{json, Map, Value as Json};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The GGUF file.
    pub file: PathBuf,
    /// List every metadata key (large arrays summarized).
    #[arg(long)]
    pub metadata: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Context size for the memory plan (capped at the model's context length).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: usize,
    /// Batch size for the memory plan.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    #[command(flatten)]
    pub cache: super::args::CacheArgs,
}

/// Arrays longer than this are summarized by length and first items.
const ARRAY_ITEMS: usize = 8;

/// Everything inspect reports, gathered once for both output forms.
struct Report<'g> {
    g: &'g Gguf,
    census: Census,
    config: Result<Config, String>,
    dims: Option<Dims>,
    plan: Option<MemoryPlan>,
}

impl<'g> Report<'g> {
    fn new(g: &'g Gguf, args: &InspectArgs) -> Report<'g> {
        let census = Census::of(g);
        let config = Config::from_gguf(g).map_err(|e| e.to_string());
        let dims = match &config {
            Ok(c) => Some(c.dims.clone()),
            Err(_) => Dims::from_metadata(g),
        };
        let plan = dims.as_ref().map(|d| {
            let size = ContextSize::resolve(args.ctx_size, args.batch_size, d.n_ctx_train);
            let layout = match &config {
                Ok(c) => CacheLayout::new(c, size, args.cache.swa_full),
                Err(_) => CacheLayout::all_global(d, size),
            };
            let cache = args.cache.params();
            let experts = config.as_ref().ok().and_then(|c| c.experts.as_ref());
            MemoryPlan::new(
                d,
                &layout,
                census.weight_bytes,
                RowTable::of(g),
                experts,
                cache,
            )
        });
        Report {
            g,
            census,
            config,
            dims,
            plan,
        }
    }

    fn meta_str(&self, key: &str) -> Option<String> {
        self.g.get_str(key).ok().map(|s| s.into_owned())
    }

    fn file_type(&self) -> Option<String> {
        let id = self.g.get_u32("general.file_type").ok()?;
        Some(file_type_name(id).map_or_else(|| format!("unknown ({id})"), str::to_string))
    }
}

pub fn run(args: &InspectArgs) -> Result<(), CliError> {
    let g = Gguf::open(&args.file)?;
    let report = Report::new(&g, args);
    let out = if args.json {
        serde_json::to_string_pretty(&to_json(&report)).expect("JSON values serialize") + "\n"
    } else {
        to_text(&report, args)
    };
    super::print(&out)
}

fn to_text(r: &Report<'_>, args: &InspectArgs) -> String {
    let g = r.g;
    let c = &r.census;
    let mut s = String::new();
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let _ = writeln!(s, "{}", name.unwrap_or_default());
    let arch = g
        .architecture()
        .map(|a| a.into_owned())
        .unwrap_or_else(|_| "?".into());
    let model_name = r.meta_str("general.name").unwrap_or_default();
    let _ = writeln!(s, "  architecture   {arch}  {model_name}");
    let _ = writeln!(
        s,
        "  file           {}, GGUF v{}, {} bytes, alignment {}",
        r.file_type()
            .unwrap_or_else(|| "file type not given".into()),
        g.version(),
        thousands(g.file_size()),
        g.alignment()
    );
    let _ = writeln!(s, "  tensors        {}", c.tensor_count);
    let _ = writeln!(
        s,
        "  parameters     {} ({})",
        thousands(c.parameter_count),
        short_count(c.parameter_count)
    );

    let _ = writeln!(s, "\nparameters by component");
    for (k, &n) in &c.params_by_component {
        if n == 0 && *k == Component::Other {
            continue;
        }
        let pct = 100.0 * n as f64 / c.parameter_count.max(1) as f64;
        let _ = writeln!(s, "  {:<10} {:>16}  {pct:5.1}%", k.name(), thousands(n));
    }
    let _ = writeln!(s, "\nbytes by type");
    for (ty, &b) in &c.bytes_by_type {
        let _ = writeln!(s, "  {:<10} {:>16}  {}", ty.name(), thousands(b), bytes(b));
    }

    let _ = writeln!(s, "\nhyper-parameters");
    match &r.config {
        Ok(cfg) => hparams_text(&mut s, cfg),
        Err(e) => {
            let _ = writeln!(s, "  (gemlet cannot run this file: {e})");
            if let Some(d) = &r.dims {
                let _ = writeln!(
                    s,
                    "  hidden {}, blocks {}, heads {} / KV heads {}, head dim {}, FFN {}, vocab {}, context {}",
                    d.n_embd, d.n_layer, d.n_head, d.n_head_kv, d.head_dim_k, d.n_ff, d.n_vocab, d.n_ctx_train
                );
            }
        }
    }

    blocks_text(&mut s, c);

    if let Some(p) = &r.plan {
        let _ = writeln!(
            s,
            "\nmemory plan (context {}, batch {}, KV cache {}/{})",
            p.context, p.batch, p.cache.type_k, p.cache.type_v
        );
        let _ = writeln!(s, "  weights (mapped)    {:>12}", bytes(p.mapped_bytes));
        if let Some(t) = p.row_table {
            let _ = writeln!(
                s,
                "    per-layer table   {:>12} in the map, at most {} resident (a row per token of the context)",
                bytes(t.bytes),
                bytes(t.touched(p.context as u64))
            );
            let _ = writeln!(s, "  weights resident    {:>12}", bytes(p.weights_bytes));
        }
        let _ = writeln!(s, "  KV cache            {:>12}", bytes(p.kv_cache_bytes));
        let _ = writeln!(s, "  compute (estimate)  {:>12}", bytes(p.compute_bytes));
        let _ = writeln!(s, "  total               {:>12}", bytes(p.total_bytes));
        match p.available_bytes {
            Some(a) => {
                let _ = writeln!(s, "  available           {:>12}", bytes(a));
                if !p.fits() {
                    let _ = writeln!(
                        s,
                        "  WARNING: this will not fit in available memory; use a smaller -c or a smaller quantization"
                    );
                }
            }
            None => {
                let _ = writeln!(s, "  available           unknown");
            }
        }
    }

    if args.metadata {
        let _ = writeln!(s, "\nmetadata ({} keys)", g.keys().count());
        for (k, v) in g.metadata() {
            let _ = writeln!(s, "  {k} = {}", v.display(ARRAY_ITEMS));
        }
    }
    s
}

fn hparams_text(s: &mut String, c: &Config) {
    let attention = match (c.dims.n_head, c.dims.n_head_kv) {
        (h, 1) if h > 1 => "multi-query",
        (h, kv) if h == kv => "multi-head",
        _ => "grouped-query",
    };
    let rows: Vec<(&str, String)> = vec![
        ("hidden size", c.dims.n_embd.to_string()),
        ("blocks", c.dims.n_layer.to_string()),
        ("heads / KV heads", {
            let kv = per_kind_text(c, |k| c.n_head_kv(k).to_string());
            format!("{} / {kv} ({attention})", c.dims.n_head)
        }),
        ("head dim (k / v)", {
            per_kind_text(c, |k| {
                let (dk, dv) = c.head_dims(k);
                format!("{dk} / {dv}")
            })
        }),
        (
            "rope dims",
            per_kind_text(c, |k| c.n_rot.get(k).to_string()),
        ),
        ("FFN size", ffn_text(c)),
        ("vocab", c.dims.n_vocab.to_string()),
        ("context length", c.dims.n_ctx_train.to_string()),
        (
            "rope base",
            if c.sliding_window.is_some() {
                format!(
                    "{} (global layers), {} (local layers)",
                    c.rope_base.global, c.rope_base.local
                )
            } else {
                c.rope_base.global.to_string()
            },
        ),
        (
            "rope scale",
            format!(
                "{} (global), {} (local)",
                c.rope_scale.global, c.rope_scale.local
            ),
        ),
        ("sliding window", window_text(c)),
        (
            "soft-caps",
            format!(
                "attention {}, final {}",
                c.attn_softcap.map_or("none".into(), |v| v.to_string()),
                c.final_softcap.map_or("none".into(), |v| v.to_string())
            ),
        ),
        ("query scale", format!("{}", c.query_scale)),
        ("norm eps", format!("{:e}", c.norm_eps)),
        (
            "norms",
            format!(
                "pre{}{}",
                if c.post_norms {
                    " + post-attention/post-FFN"
                } else {
                    ""
                },
                if c.qk_norm { " + per-head Q/K" } else { "" },
            ) + if c.v_norm { " + V (no weight)" } else { "" },
        ),
        (
            "output",
            if c.tied_output {
                "tied to token_embd".into()
            } else {
                "output.weight".into()
            },
        ),
    ];
    let mut rows = rows;
    rows.extend(extension_rows(c));
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<18} {v}");
    }
}

/// A value that may differ between global and local layers: once, or each kind's.
fn per_kind_text(c: &Config, f: impl Fn(LayerKind) -> String) -> String {
    let (g, l) = (f(LayerKind::Global), f(LayerKind::Local));
    if c.sliding_window.is_none() || g == l {
        g
    } else {
        format!("{g} (global), {l} (local)")
    }
}

/// Feed-forward sizes with the layers of each, when they differ.
fn ffn_text(c: &Config) -> String {
    let mut sizes: Vec<(usize, Vec<usize>)> = Vec::new();
    for il in 0..c.dims.n_layer {
        match sizes.iter_mut().find(|(f, _)| *f == c.n_ff(il)) {
            Some((_, layers)) => layers.push(il),
            None => sizes.push((c.n_ff(il), vec![il])),
        }
    }
    if sizes.len() <= 1 {
        return c.dims.n_ff.to_string();
    }
    sizes
        .iter()
        .map(|(f, layers)| format!("{f} (layers {})", ranges(layers)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "0-3, 5" for [0, 1, 2, 3, 5].
fn ranges(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            v[i].to_string()
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// What the later Gemmas add: Gemma 4's per-layer embeddings, layers that share a cache and
/// experts; EmbeddingGemma's bidirectional attention and embedding head.
fn extension_rows(c: &Config) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    let d = &c.dims;
    if c.n_embd_per_layer > 0 {
        rows.push((
            "per-layer embd",
            format!(
                "{} per layer: per_layer_token_embd is {} × {}, one row read per token from the \
                 map (never copied, never resident as a whole), gated into every layer",
                c.n_embd_per_layer,
                d.n_vocab,
                c.n_embd_per_layer * d.n_layer
            ),
        ));
    }
    if c.n_layer_kv < d.n_layer {
        let shares: Vec<String> = (c.n_layer_kv..d.n_layer)
            .filter_map(|il| c.kv_source(il).map(|s| format!("{il}→{s}")))
            .collect();
        rows.push((
            "shared KV",
            format!(
                "layers {}-{} have no cache of their own and attend over another's ({})",
                c.n_layer_kv,
                d.n_layer - 1,
                shares.join(", ")
            ),
        ));
    }
    if let Some(e) = &c.experts {
        let layers: Vec<usize> = (0..d.n_layer).filter(|&il| c.has_experts(il)).collect();
        rows.push((
            "experts",
            format!(
                "{} experts of FFN size {}, {} per token (softmax router), beside the dense MLP \
                 in layers {}; expert matrices stay in the map",
                e.n_expert,
                e.n_ff,
                e.n_used,
                ranges(&layers)
            ),
        ));
    }
    if let Some(a) = &c.altup {
        let sparse: Vec<usize> = (0..d.n_layer)
            .filter(|&il| a.sparsity[il].is_some())
            .collect();
        rows.push((
            "AltUp",
            format!(
                "{} streams, layers run on stream {} (predicted from all, all corrected from its \
                 output); LAuReL rank {}",
                a.n_inputs, a.active, a.laurel_rank
            ),
        ));
        if !sparse.is_empty() {
            rows.push((
                "sparsity",
                format!(
                    "layers {}: the FFN gate keeps activations above mean + {:.3} std",
                    ranges(&sparse),
                    a.sparsity[sparse[0]].unwrap_or(0.0)
                ),
            ));
        }
    }
    if let Some(h) = &c.embedding {
        let window = c.sliding_window.map_or(String::new(), |w| {
            format!(", local layers see {} positions to each side", w / 2)
        });
        rows.push((
            "attention",
            format!("bidirectional (an embedding model: every token sees the whole text{window})"),
        ));
        let dense = h.n_dense.map_or(String::new(), |n| {
            format!(
                ", then dense_2 ({} → {n}) and dense_3 ({n} → {})",
                d.n_embd, d.n_embd
            )
        });
        rows.push((
            "embedding",
            format!(
                "{} pooling of the normed hidden states{dense}: one vector of {} per text \
                 (`gemlet embed`)",
                h.pooling.name(),
                d.n_embd
            ),
        ));
    }
    rows
}

fn window_text(c: &Config) -> String {
    let Some(w) = c.sliding_window else {
        return "none".into();
    };
    let global: Vec<String> = (0..c.dims.n_layer)
        .filter(|&il| c.kind(il) == LayerKind::Global)
        .map(|il| il.to_string())
        .collect();
    format!(
        "{w} on {} of {} layers; global layers: {}",
        c.dims.n_layer - global.len(),
        c.dims.n_layer,
        if global.is_empty() {
            "none".into()
        } else {
            global.join(", ")
        }
    )
}

/// One row per block: its parameters, bytes and tensor types, with shapes given once when
/// every block has the same tensors and shapes.
fn blocks_text(s: &mut String, c: &Census) {
    let Some(first) = c.blocks.first() else {
        return;
    };
    let same_layout = c.blocks.iter().all(|b| {
        b.tensors.len() == first.tensors.len()
            && b.tensors
                .iter()
                .zip(&first.tensors)
                .all(|(x, y)| x.name == y.name && x.dims == y.dims)
    });
    let shape = |d: &[u64]| {
        format!(
            "[{}]",
            d.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let _ = writeln!(s, "\nblocks ({})", c.blocks.len());
    if same_layout {
        let _ = writeln!(s, "  every block has these tensors:");
        for t in &first.tensors {
            let _ = writeln!(s, "    {:<22} {}", t.name, shape(&t.dims));
        }
        let names: Vec<&str> = first.tensors.iter().map(|t| t.name.as_str()).collect();
        let widths: Vec<usize> = names.iter().map(|n| n.len().max(5)).collect();
        let mut header = format!("  {:>4} {:>12} {:>10} ", "blk", "params", "bytes");
        for (n, w) in names.iter().zip(&widths) {
            let _ = write!(header, " {n:<w$}");
        }
        let _ = writeln!(s, "{}", header.trim_end());
        for b in &c.blocks {
            let mut row = format!(
                "  {:>4} {:>12} {:>10} ",
                b.index,
                thousands(b.params),
                bytes(b.bytes)
            );
            for (t, w) in b.tensors.iter().zip(&widths) {
                let _ = write!(row, " {:<w$}", t.ty.name());
            }
            let _ = writeln!(s, "{}", row.trim_end());
        }
    } else {
        for b in &c.blocks {
            let tensors: Vec<String> = b
                .tensors
                .iter()
                .map(|t| format!("{} {}{}", t.name, t.ty.name(), shape(&t.dims)))
                .collect();
            let _ = writeln!(
                s,
                "  {:>4} {:>12}  {}",
                b.index,
                thousands(b.params),
                tensors.join("  ")
            );
        }
    }
}

fn value_json(v: &Value<'_>) -> Json {
    match v {
        Value::String(s) => Json::String(s.to_string()),
        Value::Bool(b) => Json::Bool(*b),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(a) if a.len() > ARRAY_ITEMS => json!({
            "type": "array",
            "element_type": a.elem_type().name(),
            "length": a.len(),
            "first": a.iter().take(ARRAY_ITEMS).map(|x| value_json(&x)).collect::<Vec<_>>(),
        }),
        Value::Array(a) => Json::Array(a.iter().map(|x| value_json(&x)).collect()),
        other => match other.as_integer() {
            Some(i) => i64::try_from(i).map_or_else(|_| json!(i as u64), |i| json!(i)),
            None => Json::Null,
        },
    }
}

fn to_json(r: &Report<'_>) -> Json {
    let g = r.g;
    let c = &r.census;
    let components: Map<String, Json> = c
        .params_by_component
        .iter()
        .map(|(k, &n)| (k.name().to_string(), json!(n)))
        .collect();
    let by_type: Map<String, Json> = c
        .bytes_by_type
        .iter()
        .map(|(t, &b)| (t.name().to_string(), json!(b)))
        .collect();
    let layers: Vec<Json> = c
        .blocks
        .iter()
        .map(|b| {
            json!({
                "index": b.index,
                "params": b.params,
                "bytes": b.bytes,
                "tensors": b.tensors.iter().map(|t| json!({
                    "name": t.name, "shape": t.dims, "type": t.ty.name(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let metadata: Map<String, Json> = g
        .metadata()
        .map(|(k, v)| (k.to_string(), value_json(&v)))
        .collect();
    let block_count = r.dims.as_ref().map(|d| d.n_layer).unwrap_or(c.blocks.len());
    let mut out = json!({
        "architecture": g.architecture().ok().map(|a| a.into_owned()),
        "name": r.meta_str("general.name"),
        "file_type": r.file_type(),
        "gguf_version": g.version(),
        "alignment": g.alignment(),
        "file_size": g.file_size(),
        "tensor_count": c.tensor_count,
        "parameter_count": c.parameter_count,
        "block_count": block_count,
        "params_by_component": components,
        "bytes_by_type": by_type,
        "layers": layers,
        "metadata": metadata,
    });
    let obj = out.as_object_mut().expect("object");
    match &r.config {
        Ok(cfg) => {
            obj.insert("hyperparameters".into(), config_json(cfg));
        }
        Err(e) => {
            obj.insert("unsupported".into(), json!(e));
        }
    }
    if let Some(p) = &r.plan {
        obj.insert(
            "memory".into(),
            json!({
                "context": p.context,
                "batch": p.batch,
                "weights_bytes": p.weights_bytes,
                "mapped_bytes": p.mapped_bytes,
                "row_table": p.row_table.map(|t| json!({
                    "tensor": RowTable::TENSOR,
                    "bytes": t.bytes,
                    "row_bytes": t.row_bytes,
                    "resident_bytes": t.touched(p.context as u64),
                })),
                "kv_cache_bytes": p.kv_cache_bytes,
                "compute_bytes": p.compute_bytes,
                "total_bytes": p.total_bytes,
                "available_bytes": p.available_bytes,
                "fits": p.fits(),
            }),
        );
    }
    out
}

fn config_json(c: &Config) -> Json {
    json!({
        "hidden_size": c.dims.n_embd,
        "block_count": c.dims.n_layer,
        "head_count": c.dims.n_head,
        "head_count_kv": c.dims.n_head_kv,
        "head_dim_k": c.dims.head_dim_k,
        "head_dim_v": c.dims.head_dim_v,
        "ffn_size": c.dims.n_ff,
        "vocab_size": c.dims.n_vocab,
        "context_length": c.dims.n_ctx_train,
        "rope_base": c.rope_base.global,
        "rope_base_local": c.rope_base.local,
        "rope_scale": c.rope_scale.global,
        "rope_scale_local": c.rope_scale.local,
        "sliding_window": c.sliding_window,
        "local_layers": (0..c.dims.n_layer).filter(|&il| c.kind(il) == LayerKind::Local).collect::<Vec<_>>(),
        "attn_softcap": c.attn_softcap,
        "final_softcap": c.final_softcap,
        "query_scale": c.query_scale,
        "norm_eps": c.norm_eps,
        "qk_norm": c.qk_norm,
        "post_norms": c.post_norms,
        "tied_output": c.tied_output,
        "head_count_kv_local": c.dims.n_head_kv_swa,
        "head_dim_k_local": c.dims.head_dim_k_swa,
        "head_dim_v_local": c.dims.head_dim_v_swa,
        "rope_dims": c.n_rot.global,
        "rope_dims_local": c.n_rot.local,
        "ffn_sizes": c.n_ff_layers,
        "embedding_length_per_layer": c.n_embd_per_layer,
        "shared_kv_layers": (c.n_layer_kv..c.dims.n_layer)
            .map(|il| json!({"layer": il, "cache_of": c.kv_source(il)}))
            .collect::<Vec<_>>(),
        "causal": c.causal,
        "altup": c.altup.as_ref().map(|a| json!({
            "streams": a.n_inputs,
            "active": a.active,
            "laurel_rank": a.laurel_rank,
            "sparse_layers": (0..c.dims.n_layer).filter(|&il| a.sparsity[il].is_some()).collect::<Vec<_>>(),
        })),
        "embedding": c.embedding.as_ref().map(|h| json!({
            "pooling": h.pooling.name(),
            "dense_size": h.n_dense,
        })),
        "experts": c.experts.as_ref().map(|e| json!({
            "count": e.n_expert,
            "used": e.n_used,
            "ffn_size": e.n_ff,
            "layers": (0..c.dims.n_layer).filter(|&il| c.has_experts(il)).collect::<Vec<_>>(),
        })),
    })
}
