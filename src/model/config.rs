//! The Gemma family's configuration, read from GGUF metadata: the one source of truth for the
//! graph, the KV cache, the memory plan and `inspect`.
//!
//! Key names and defaults follow llama.cpp (`src/llama-model.cpp` hparams loading and
//! `src/models/gemma*.cpp`). The versions differ only by the fields below.

use super::{ModelError, Result};
use crate::gguf::{Gguf, GgufError, Value};

/// The architectures gemlet runs.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma-embedding",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Gemma,
    Gemma2,
    Gemma3,
    /// Gemma 3n: AltUp streams around Gemma 3's layers, LAuReL, per-layer embeddings,
    /// activation sparsity, KV sharing (a forward pass of its own, `gemma3n.rs`).
    Gemma3n,
    Gemma4,
    /// EmbeddingGemma: Gemma 3's layers with bidirectional attention, producing embeddings.
    GemmaEmbedding,
}

impl Arch {
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "gemma" => Some(Arch::Gemma),
            "gemma2" => Some(Arch::Gemma2),
            "gemma3" => Some(Arch::Gemma3),
            "gemma3n" => Some(Arch::Gemma3n),
            "gemma4" => Some(Arch::Gemma4),
            "gemma-embedding" => Some(Arch::GemmaEmbedding),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma => "gemma",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
            Arch::Gemma3n => "gemma3n",
            Arch::Gemma4 => "gemma4",
            Arch::GemmaEmbedding => "gemma-embedding",
        }
    }
}

/// How the per-token hidden states of a text become one embedding (llama.cpp's
/// `pooling_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// None: one embedding per token.
    None,
    /// The mean over the tokens.
    Mean,
    /// The first token's.
    Cls,
    /// The last token's.
    Last,
}

impl Pooling {
    pub const NAMES: &'static [&'static str] = &["none", "mean", "cls", "last"];

    pub fn from_name(name: &str) -> Option<Pooling> {
        match name {
            "none" => Some(Pooling::None),
            "mean" => Some(Pooling::Mean),
            "cls" => Some(Pooling::Cls),
            "last" => Some(Pooling::Last),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// llama.cpp's `LLAMA_POOLING_TYPE_*` numbers, as GGUF files store them (4, rank, is a
    /// reranker's and not one gemlet runs).
    fn from_gguf(v: u32) -> Option<Pooling> {
        [Pooling::None, Pooling::Mean, Pooling::Cls, Pooling::Last]
            .get(v as usize)
            .copied()
    }
}

/// The embedding head of a model that makes embeddings (EmbeddingGemma): how it pools, and
/// sentence-transformers' two dense projections after pooling (`dense_2`, `dense_3`) where
/// the file has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingHead {
    /// The file's `pooling_type`.
    pub pooling: Pooling,
    /// The width between the two dense projections (`dense_2_feat_out`), if the file has them.
    pub n_dense: Option<usize>,
}

/// Gemma 3n's alternating updates (AltUp): the hidden state is `n_inputs` streams; each layer
/// runs on the `active` one, predicted from all of them, and corrects all of them from its
/// output. Beside attention each layer has a low-rank residual (LAuReL), and the first layers
/// keep only the strongest activations of their feed-forward gate.
#[derive(Debug, Clone, PartialEq)]
pub struct AltUp {
    pub n_inputs: usize,
    pub active: usize,
    /// Rank of LAuReL's two projections (`laurel_l`, `laurel_r`).
    pub laurel_rank: usize,
    /// Per layer, the activation sparsity's cut-off in standard deviations above the mean
    /// (`activation_sparsity_scale`; `None`: a dense gate).
    pub sparsity: Vec<Option<f32>>,
}

/// A model's sizes. Part of every [`Config`]; for architectures gemlet does not run, `inspect`
/// reads them from the standard keys ([`Dims::from_metadata`]) to plan their memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dims {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Hidden size (embedding length).
    pub n_embd: usize,
    /// Feed-forward (GeGLU) inner size, the largest of any layer's.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads of global layers (1: multi-query, < n_head: grouped-query, = n_head:
    /// multi-head).
    pub n_head_kv: usize,
    /// The same on sliding-window layers (Gemma 4's 26B and 31B have more; others: the same).
    pub n_head_kv_swa: usize,
    /// Per-head key (and query) length of global layers.
    pub head_dim_k: usize,
    /// Per-head value length of global layers.
    pub head_dim_v: usize,
    /// The same on sliding-window layers (Gemma 4's are narrower; others: the same).
    pub head_dim_k_swa: usize,
    pub head_dim_v_swa: usize,
    /// Rows of the token embedding.
    pub n_vocab: usize,
    /// Context length the model was trained with (0 when a file of another architecture does
    /// not say).
    pub n_ctx_train: usize,
}

impl Dims {
    /// Dimensions from `{arch}.*` keys of any architecture (llama.cpp's key names), with
    /// llama.cpp's defaults; `None` when the basic keys are missing.
    pub fn from_metadata(g: &Gguf) -> Option<Dims> {
        let arch = g.architecture().ok()?;
        let u = |k: &str| g.get_u32(&format!("{arch}.{k}")).ok().map(|v| v as usize);
        // Every block has tensors of its own: a larger count would size per-layer tables by
        // a number the file cannot back.
        let n_layer = u("block_count").filter(|&n| n <= g.tensors().len())?;
        let n_embd = u("embedding_length")?;
        let n_head = u("attention.head_count").filter(|&h| h > 0)?;
        let n_vocab = g
            .tensor("token_embd.weight")
            .and_then(|t| t.dims.get(1).copied())
            .map(|v| v as usize)
            .or_else(|| g.get_array("tokenizer.ggml.tokens").ok().map(|a| a.len()))?;
        let head_dim_k = u("attention.key_length").unwrap_or(n_embd / n_head);
        let head_dim_v = u("attention.value_length").unwrap_or(n_embd / n_head);
        Some(Dims {
            n_layer,
            n_embd,
            n_ff: u("feed_forward_length").unwrap_or(4 * n_embd),
            n_head,
            n_head_kv: u("attention.head_count_kv").unwrap_or(n_head),
            n_head_kv_swa: u("attention.head_count_kv").unwrap_or(n_head),
            head_dim_k,
            head_dim_v,
            head_dim_k_swa: u("attention.key_length_swa").unwrap_or(head_dim_k),
            head_dim_v_swa: u("attention.value_length_swa").unwrap_or(head_dim_v),
            n_vocab,
            n_ctx_train: u("context_length").unwrap_or(0),
        })
    }
}

/// What a layer's attention sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    /// Every earlier position.
    Global,
    /// The positions inside the sliding window (Gemma 2 and 3's local layers).
    Local,
}

impl LayerKind {
    pub const ALL: [LayerKind; 2] = [LayerKind::Global, LayerKind::Local];

    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Global => "global",
            LayerKind::Local => "local",
        }
    }
}

/// One value for each [`LayerKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerKind<T> {
    pub global: T,
    pub local: T,
}

impl<T> PerKind<T> {
    pub fn new(mut f: impl FnMut(LayerKind) -> T) -> PerKind<T> {
        PerKind {
            global: f(LayerKind::Global),
            local: f(LayerKind::Local),
        }
    }

    pub fn get(&self, kind: LayerKind) -> &T {
        match kind {
            LayerKind::Global => &self.global,
            LayerKind::Local => &self.local,
        }
    }

    pub fn get_mut(&mut self, kind: LayerKind) -> &mut T {
        match kind {
            LayerKind::Global => &mut self.global,
            LayerKind::Local => &mut self.local,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (LayerKind, &T)> {
        [
            (LayerKind::Global, &self.global),
            (LayerKind::Local, &self.local),
        ]
        .into_iter()
    }

    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> PerKind<U> {
        PerKind {
            global: f(self.global),
            local: f(self.local),
        }
    }
}

/// Everything the forward pass needs to know about a model, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub dims: Dims,
    pub norm_eps: f32,
    /// Rope base and frequency scale (1 / `rope.scaling.factor`) of each kind of layer:
    /// `rope.freq_base` on global layers (default 10000), the architecture's rule on local ones.
    pub rope_base: PerKind<f32>,
    pub rope_scale: PerKind<f32>,
    /// Sliding-window size, if the model has local layers.
    pub sliding_window: Option<usize>,
    /// Each layer's kind of attention.
    pub layer_kinds: Vec<LayerKind>,
    /// Gemma 2's tanh soft-cap on attention logits.
    pub attn_softcap: Option<f32>,
    /// tanh soft-cap on the output logits.
    pub final_softcap: Option<f32>,
    /// Factor applied to queries before q·k (llama.cpp's `f_attention_scale`).
    pub query_scale: f32,
    /// Gemma 3's per-head RMSNorm on queries and keys.
    pub qk_norm: bool,
    /// Gemma 2/3's norms after attention and after the FFN, before the residual adds.
    pub post_norms: bool,
    /// Output projection is the token embedding (no `output.weight`).
    pub tied_output: bool,
    /// Each layer's feed-forward inner size (Gemma 4's KV-sharing layers are twice as wide).
    pub n_ff_layers: Vec<usize>,
    /// Dimensions of each head that rope rotates, per kind of layer (the head's, unless the
    /// file says `rope.dimension_count` / `_swa`).
    pub n_rot: PerKind<usize>,
    /// Layers `0..n_layer_kv` have a KV cache of their own; the later ones (Gemma 4's
    /// `attention.shared_kv_layers`) attend over the cache of the last earlier layer of their
    /// kind, and have no K/V projections.
    pub n_layer_kv: usize,
    /// Width of Gemma 4's per-layer embeddings (PLE), 0 for none: each layer adds a gated
    /// projection of its slice of a per-token table row.
    pub n_embd_per_layer: usize,
    /// Gemma 4's RMS norm (without a weight) of the values.
    pub v_norm: bool,
    /// Gemma 4's mixture of experts (26B-A4B) beside the dense MLP of the layers that have a
    /// router.
    pub experts: Option<Experts>,
    /// Gemma 3n's AltUp streams, LAuReL and activation sparsity.
    pub altup: Option<AltUp>,
    /// Whether a token attends only to earlier ones. EmbeddingGemma's attention is
    /// bidirectional, its sliding window symmetric (half the window on each side).
    pub causal: bool,
    /// The embedding model's pooling and projections (EmbeddingGemma); `None` for a model
    /// made to generate (which `embed` pools as asked).
    pub embedding: Option<EmbeddingHead>,
}

/// A mixture-of-experts feed-forward: each token goes through the `n_used` of `n_expert`
/// experts its router scores highest, their outputs weighted by the renormalised scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experts {
    pub n_expert: usize,
    pub n_used: usize,
    /// Each expert's feed-forward inner size (`expert_feed_forward_length`).
    pub n_ff: usize,
    /// Which layers have experts: those with a router (`blk.N.ffn_gate_inp`), as llama.cpp
    /// decides it.
    pub layers: Vec<bool>,
}

/// llama.cpp's `LLAMA_MAX_EXPERTS`.
const MAX_EXPERTS: usize = 1024;

impl Config {
    /// Reads and validates the configuration of a Gemma-family GGUF.
    pub fn from_gguf(g: &Gguf) -> Result<Config> {
        let arch_name = g.architecture()?;
        let arch = Arch::from_name(&arch_name).ok_or_else(|| ModelError::Architecture {
            found: arch_name.to_string(),
        })?;
        let a = arch.name();
        let key = |k: &str| format!("{a}.{k}");
        let u = |k: &str| -> Result<usize> { Ok(g.get_u32(&key(k))? as usize) };
        let opt_u = |k: &str| -> Result<Option<usize>> {
            Ok(g.opt(&key(k), Gguf::get_u32)?.map(|v| v as usize))
        };
        let opt_f = |k: &str| -> Result<Option<f32>> { Ok(g.opt(&key(k), Gguf::get_f32)?) };

        let n_layer = u("block_count")?;
        // Every block has tensors of its own: a count the file cannot hold is refused before
        // it sizes anything (per-layer tables).
        if n_layer > g.tensors().len() {
            return Err(ModelError::Config(format!(
                "{}: {n_layer} blocks, but the file has only {} tensors",
                key("block_count"),
                g.tensors().len()
            )));
        }
        let n_embd = u("embedding_length")?;
        let n_head = per_layer_scalar(g, &key("attention.head_count"), n_layer)?;
        let n_head_kv_layers = match g.get(&key("attention.head_count_kv")) {
            Some(_) => per_layer_values(g, &key("attention.head_count_kv"), n_layer)?,
            None => vec![n_head; n_layer],
        };
        let n_ff_layers = per_layer_values(g, &key("feed_forward_length"), n_layer)?;
        let n_ff = n_ff_layers.iter().copied().max().unwrap_or(0);
        let per_head = n_embd.checked_div(n_head).unwrap_or(0);
        let head_dim_k = opt_u("attention.key_length")?.unwrap_or(per_head);
        let head_dim_v = opt_u("attention.value_length")?.unwrap_or(per_head);
        let head_dim_k_swa = opt_u("attention.key_length_swa")?.unwrap_or(head_dim_k);
        let head_dim_v_swa = opt_u("attention.value_length_swa")?.unwrap_or(head_dim_v);
        // llama.cpp: the global layers rotate the global head's dimensions unless the file
        // says otherwise, the local ones the global count unless it says theirs.
        let n_rot_global = opt_u("rope.dimension_count")?.unwrap_or(head_dim_k);
        let n_rot_local = opt_u("rope.dimension_count_swa")?.unwrap_or(n_rot_global);
        let n_ctx_train = u("context_length")?;
        let norm_eps = g.get_f32(&key("attention.layer_norm_rms_epsilon"))?;

        let rope_base = opt_f("rope.freq_base")?.unwrap_or(10_000.0);
        if let Some(Value::String(t)) = g.get(&key("rope.scaling.type")) {
            if t != "linear" && t != "none" {
                return Err(ModelError::Config(format!(
                    "{}: rope scaling '{t}' is not supported (only linear)",
                    key("rope.scaling.type")
                )));
            }
        }
        let factor = match opt_f("rope.scaling.factor")? {
            Some(f) => f,
            None => opt_f("rope.scale_linear")?.unwrap_or(0.0),
        };
        let rope_scale = if factor == 0.0 { 1.0 } else { 1.0 / factor };
        let swa_base = opt_f("rope.freq_base_swa")?;

        // Which layers are local, as llama.cpp decides it per architecture.
        let window = opt_u("attention.sliding_window")?;
        let (sliding_window, rope_base_local, rope_scale_local, default_period) = match arch {
            Arch::Gemma => (None, rope_base, rope_scale, 0),
            // Gemma 2 always has local layers; 4096 when the file does not say.
            Arch::Gemma2 => (
                Some(window.unwrap_or(4096)),
                swa_base.unwrap_or(rope_base),
                rope_scale,
                2,
            ),
            // Gemma 3: local layers only with a window; their rope base defaults to 10000
            // (not the file's global base) and they are never scaled.
            Arch::Gemma3 | Arch::Gemma4 | Arch::GemmaEmbedding => (
                window.filter(|&w| w > 0),
                swa_base.unwrap_or(10_000.0),
                1.0,
                6,
            ),
            Arch::Gemma3n => (
                window.filter(|&w| w > 0),
                swa_base.unwrap_or(10_000.0),
                1.0,
                5,
            ),
        };
        let layer_kinds = match sliding_window {
            None => vec![LayerKind::Global; n_layer],
            Some(_) => swa_pattern(
                g,
                &key("attention.sliding_window_pattern"),
                n_layer,
                default_period,
            )?,
        };
        // Gemma 4's larger models give global and local layers different KV head counts.
        let n_head_kv = per_kind(
            &n_head_kv_layers,
            &layer_kinds,
            &key("attention.head_count_kv"),
        )?;

        let attn_softcap = match arch {
            Arch::Gemma2 => Some(opt_f("attn_logit_softcapping")?.unwrap_or(50.0)),
            _ => None,
        };
        let final_softcap = match arch {
            Arch::Gemma => None,
            Arch::Gemma2 => Some(opt_f("final_logit_softcapping")?.unwrap_or(30.0)),
            Arch::Gemma3 | Arch::Gemma4 | Arch::GemmaEmbedding => opt_f("final_logit_softcapping")?,
            // llama.cpp caps Gemma 3n's logits at 30 whatever the file says; its files say 30.
            Arch::Gemma3n => Some(opt_f("final_logit_softcapping")?.unwrap_or(30.0)),
        }
        .filter(|&c| c > 0.0);

        // gemma_pytorch's query_pre_attn_scalar: hidden/heads for the 27B models (detected, as in
        // llama.cpp, by their layer count), head_dim otherwise.
        let is_27b = matches!((arch, n_layer), (Arch::Gemma2, 46) | (Arch::Gemma3, 62));
        // Gemma 4 normalises queries and keys and scales neither.
        let query_scale = if matches!(arch, Arch::Gemma4 | Arch::Gemma3n) {
            1.0
        } else if is_27b {
            1.0 / (per_head as f32).sqrt()
        } else {
            1.0 / (head_dim_k as f32).sqrt()
        };
        // Gemma 3n: layers from the 20th on share (llama.cpp's n_layer_kv_from_start), as its
        // files' shared_kv_layers say.
        let default_shared = match arch {
            Arch::Gemma3n => n_layer.saturating_sub(20),
            _ => 0,
        };
        let shared_kv = opt_u("attention.shared_kv_layers")?.unwrap_or(default_shared);
        let n_layer_kv = n_layer.checked_sub(shared_kv).ok_or_else(|| {
            ModelError::Config(format!(
                "{}: {shared_kv} layers share a cache, but the model has {n_layer}",
                key("attention.shared_kv_layers")
            ))
        })?;
        let n_embd_per_layer = match arch {
            Arch::Gemma4 => opt_u("embedding_length_per_layer_input")?.unwrap_or(0),
            Arch::Gemma3n => opt_u("embedding_length_per_layer_input")?.unwrap_or(256),
            _ => 0,
        };
        let altup = match arch {
            Arch::Gemma3n => Some(read_altup(g, a, n_layer)?),
            _ => None,
        };

        let experts = match arch {
            Arch::Gemma4 => read_experts(g, a, n_layer)?,
            _ => None,
        };

        let embedding = match arch {
            Arch::GemmaEmbedding => Some(read_embedding_head(g, a, n_embd)?),
            _ => None,
        };

        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let n_vocab = *embd.dims.get(1).unwrap_or(&1) as usize;

        let config = Config {
            arch,
            dims: Dims {
                n_layer,
                n_embd,
                n_ff,
                n_head,
                n_head_kv: n_head_kv.global,
                n_head_kv_swa: n_head_kv.local,
                head_dim_k,
                head_dim_v,
                head_dim_k_swa,
                head_dim_v_swa,
                n_vocab,
                n_ctx_train,
            },
            norm_eps,
            rope_base: PerKind {
                global: rope_base,
                local: rope_base_local,
            },
            rope_scale: PerKind {
                global: rope_scale,
                local: rope_scale_local,
            },
            sliding_window,
            layer_kinds,
            attn_softcap,
            final_softcap,
            query_scale,
            qk_norm: matches!(
                arch,
                Arch::Gemma3 | Arch::Gemma3n | Arch::Gemma4 | Arch::GemmaEmbedding
            ),
            post_norms: arch != Arch::Gemma,
            tied_output: g.tensor("output.weight").is_none(),
            n_ff_layers,
            n_rot: PerKind {
                global: n_rot_global,
                local: n_rot_local,
            },
            n_layer_kv,
            n_embd_per_layer,
            v_norm: matches!(arch, Arch::Gemma4 | Arch::Gemma3n),
            experts,
            altup,
            causal: arch != Arch::GemmaEmbedding,
            embedding,
        };
        config.validate()?;
        Ok(config)
    }

    /// Every number the graph and the buffers are built from, in range; errors name the key.
    fn validate(&self) -> Result<()> {
        let key = |k: &str| format!("{}.{k}", self.arch.name());
        let bad = |m: String| Err(ModelError::Config(m));
        let d = &self.dims;
        // Sizes: positive, and far from overflowing the products that size buffers on 32-bit
        // targets.
        let limit = 1usize << 24;
        for (k, v) in [
            ("block_count", d.n_layer),
            ("embedding_length", d.n_embd),
            ("attention.head_count", d.n_head),
            ("attention.head_count_kv", d.n_head_kv),
            ("attention.head_count_kv (local layers)", d.n_head_kv_swa),
            ("attention.key_length", d.head_dim_k),
            ("attention.value_length", d.head_dim_v),
            ("attention.key_length_swa", d.head_dim_k_swa),
            ("attention.value_length_swa", d.head_dim_v_swa),
            ("context_length", d.n_ctx_train),
        ]
        .into_iter()
        .chain(self.n_ff_layers.iter().map(|&f| ("feed_forward_length", f)))
        .chain(
            self.embedding
                .as_ref()
                .and_then(|h| h.n_dense)
                .map(|n| ("dense_2_feat_out", n)),
        ) {
            if v == 0 {
                return bad(format!("{} is 0: it must be positive", key(k)));
            }
            if v > limit {
                return bad(format!("{} is {v}: implausibly large", key(k)));
            }
        }
        if d.n_vocab == 0 {
            return bad("token_embd.weight has no rows: the vocabulary is empty".into());
        }
        for n_kv in [d.n_head_kv, d.n_head_kv_swa] {
            if d.n_head % n_kv != 0 {
                return bad(format!(
                    "{}: {} query heads are not a multiple of {n_kv} key/value heads",
                    key("attention.head_count_kv"),
                    d.n_head,
                ));
            }
        }
        for (kind, rot_key, head_key) in [
            (
                LayerKind::Global,
                "rope.dimension_count",
                "attention.key_length",
            ),
            (
                LayerKind::Local,
                "rope.dimension_count_swa",
                "attention.key_length_swa",
            ),
        ] {
            let (rot, head) = (*self.n_rot.get(kind), self.head_dims(kind).0);
            if rot % 2 != 0 || rot == 0 || rot > head {
                return bad(format!(
                    "{} is {rot} with {} {head}: rope rotates pairs of a head's dimensions, \
                     so it must be even, positive and at most the head's",
                    key(rot_key),
                    key(head_key)
                ));
            }
        }
        if self.n_layer_kv < d.n_layer {
            // llama.cpp's rule: a sharing layer reads the cache of the last local or the last
            // global layer before the sharing ones, which must be of its kind.
            for il in self.n_layer_kv..d.n_layer {
                let ok = self
                    .kv_source(il)
                    .is_some_and(|s| self.kind(s) == self.kind(il));
                if !ok {
                    return bad(format!(
                        "{}: layer {il} ({}) would share the cache of a layer of another kind \
                         (the last two layers with a cache must be one local, then one global)",
                        key("attention.shared_kv_layers"),
                        self.kind(il).name()
                    ));
                }
            }
        }
        if self.v_norm && (d.head_dim_k != d.head_dim_v || d.head_dim_k_swa != d.head_dim_v_swa) {
            return bad(format!(
                "{}: Gemma 4 needs keys and values of one head length",
                key("attention.value_length")
            ));
        }
        if let Some(e) = &self.experts {
            if e.n_expert == 0 || e.n_expert > MAX_EXPERTS {
                return bad(format!(
                    "{} is {}: it must lie between 1 and {MAX_EXPERTS}",
                    key("expert_count"),
                    e.n_expert
                ));
            }
            if e.n_used == 0 || e.n_used > e.n_expert {
                return bad(format!(
                    "{} is {}: it must lie between 1 and {} ({})",
                    key("expert_used_count"),
                    e.n_used,
                    e.n_expert,
                    key("expert_count")
                ));
            }
            if e.n_ff == 0 || e.n_ff > limit {
                return bad(format!(
                    "{} is {}: it must lie between 1 and {limit}",
                    key("expert_feed_forward_length"),
                    e.n_ff
                ));
            }
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return bad(format!(
                "{} is {}: it must lie between 0 and 1",
                key("attention.layer_norm_rms_epsilon"),
                self.norm_eps
            ));
        }
        for (k, v) in [
            ("rope.scaling.factor", self.rope_scale.global),
            ("rope.scaling.factor (local layers)", self.rope_scale.local),
            ("attn_logit_softcapping", self.attn_softcap.unwrap_or(1.0)),
            ("final_logit_softcapping", self.final_softcap.unwrap_or(1.0)),
            ("attention scale", self.query_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!(
                    "{} gives {v}: it must be a finite number above 0",
                    key(k)
                ));
            }
        }
        for (k, v) in [
            ("rope.freq_base", self.rope_base.global),
            ("rope.freq_base_swa (local layers)", self.rope_base.local),
        ] {
            if !(v.is_finite() && v > 1.0) {
                return bad(format!(
                    "{} is {v}: it must be a finite number above 1",
                    key(k)
                ));
            }
        }
        Ok(())
    }

    /// Layer `il`'s kind of attention.
    pub fn kind(&self, il: usize) -> LayerKind {
        self.layer_kinds
            .get(il)
            .copied()
            .unwrap_or(LayerKind::Global)
    }

    /// Key and value head lengths of a layer of `kind`.
    pub fn head_dims(&self, kind: LayerKind) -> (usize, usize) {
        match kind {
            LayerKind::Global => (self.dims.head_dim_k, self.dims.head_dim_v),
            LayerKind::Local => (self.dims.head_dim_k_swa, self.dims.head_dim_v_swa),
        }
    }

    /// Key/value heads of a layer of `kind`.
    pub fn n_head_kv(&self, kind: LayerKind) -> usize {
        match kind {
            LayerKind::Global => self.dims.n_head_kv,
            LayerKind::Local => self.dims.n_head_kv_swa,
        }
    }

    /// Whether layer `il` has experts beside its dense MLP.
    pub fn has_experts(&self, il: usize) -> bool {
        self.experts
            .as_ref()
            .is_some_and(|e| e.layers.get(il).copied().unwrap_or(false))
    }

    /// Layer `il`'s feed-forward inner size.
    pub fn n_ff(&self, il: usize) -> usize {
        self.n_ff_layers.get(il).copied().unwrap_or(self.dims.n_ff)
    }

    /// The layer whose KV cache layer `il` attends over: itself, or for a sharing layer
    /// llama.cpp's choice (the layer before the sharing ones for a global layer, the one
    /// before that for a local one); `None` when there is none.
    pub fn kv_source(&self, il: usize) -> Option<usize> {
        if il < self.n_layer_kv {
            return Some(il);
        }
        let back = match self.kind(il) {
            LayerKind::Local => 2,
            LayerKind::Global => 1,
        };
        self.n_layer_kv.checked_sub(back)
    }

    /// Positions a layer of `kind` attends over at most: its sliding window, or all of them.
    pub fn window(&self, kind: LayerKind) -> Option<usize> {
        match kind {
            LayerKind::Global => None,
            LayerKind::Local => self.sliding_window,
        }
    }
}

/// Gemma 3n's AltUp: stream count and active stream from the converter's keys (llama.cpp
/// 0c1e570 fixes them at 4 and 0, as every published file has them), LAuReL's rank from its
/// tensor, sparsity per layer from `activation_sparsity_scale` (a finite value; the
/// converter writes -inf for a dense layer), or llama.cpp's fixed first 10 layers.
fn read_altup(g: &Gguf, arch: &str, n_layer: usize) -> Result<AltUp> {
    let key = |k: &str| format!("{arch}.{k}");
    let n_inputs = g.opt(&key("altup.num_inputs"), Gguf::get_u32)?.unwrap_or(4) as usize;
    let active = g.opt(&key("altup.active_idx"), Gguf::get_u32)?.unwrap_or(0) as usize;
    if !(2..=16).contains(&n_inputs) || active >= n_inputs {
        return Err(ModelError::Config(format!(
            "{}: {n_inputs} streams with active stream {active}: expected 2 to 16 streams and \
             an active one among them",
            key("altup.num_inputs")
        )));
    }
    let laurel = "blk.0.laurel_l.weight";
    let laurel_rank = g
        .tensor(laurel)
        .ok_or_else(|| ModelError::MissingTensor(laurel.into()))?
        .dims
        .get(1)
        .map_or(0, |&r| r as usize);
    if laurel_rank == 0 || laurel_rank > 1 << 16 {
        return Err(ModelError::Config(format!(
            "{laurel}: rank {laurel_rank} (expected 1 to 65536)"
        )));
    }
    const STD_95: f32 = 1.644_853_4;
    let sk = key("activation_sparsity_scale");
    let sparsity = match g.get(&sk) {
        None => (0..n_layer).map(|il| (il < 10).then_some(STD_95)).collect(),
        Some(Value::Array(a)) => {
            let v = a.f32s().filter(|v| v.len() == n_layer).ok_or_else(|| {
                ModelError::Config(format!("{sk}: expected {n_layer} floats, one per layer"))
            })?;
            v.into_iter().map(|s| s.is_finite().then_some(s)).collect()
        }
        Some(_) => {
            return Err(ModelError::Config(format!(
                "{sk}: expected an array of {n_layer} floats"
            )))
        }
    };
    Ok(AltUp {
        n_inputs,
        active,
        laurel_rank,
        sparsity,
    })
}

/// EmbeddingGemma's head: the pooling its file declares (none when it says nothing, as
/// llama.cpp reads it) and the width of its dense projections, whose keys
/// must agree with the hidden size where present (llama.cpp asserts it).
fn read_embedding_head(g: &Gguf, arch: &str, n_embd: usize) -> Result<EmbeddingHead> {
    let key = |k: &str| format!("{arch}.{k}");
    let pooling = match g.opt(&key("pooling_type"), Gguf::get_u32)? {
        None => Pooling::None,
        Some(v) => Pooling::from_gguf(v).ok_or_else(|| {
            ModelError::Config(format!(
                "{}: pooling type {v} is not supported (0 none, 1 mean, 2 cls, 3 last)",
                key("pooling_type")
            ))
        })?,
    };
    let opt = |k: &str| -> Result<Option<usize>> {
        Ok(g.opt(&key(k), Gguf::get_u32)?.map(|v| v as usize))
    };
    for k in ["dense_2_feat_in", "dense_3_feat_out"] {
        if let Some(v) = opt(k)?.filter(|&v| v != n_embd) {
            return Err(ModelError::Config(format!(
                "{} is {v}, but the hidden size is {n_embd}: the dense projections map the \
                 hidden state back to its own width",
                key(k)
            )));
        }
    }
    let n_dense = match g.tensor("dense_2.weight") {
        None => None,
        Some(t) => Some(match opt("dense_2_feat_out")? {
            Some(v) => v,
            None => *t.dims.get(1).unwrap_or(&0) as usize,
        }),
    };
    Ok(EmbeddingHead { pooling, n_dense })
}

/// The experts of a file whose layers have routers; their counts are then required.
fn read_experts(g: &Gguf, arch: &str, n_layer: usize) -> Result<Option<Experts>> {
    let layers: Vec<bool> = (0..n_layer)
        .map(|il| g.tensor(&format!("blk.{il}.ffn_gate_inp.weight")).is_some())
        .collect();
    if !layers.contains(&true) {
        return Ok(None);
    }
    let key = |k: &str| format!("{arch}.{k}");
    let u = |k: &str| -> Result<usize> { Ok(g.get_u32(&key(k))? as usize) };
    Ok(Some(Experts {
        n_expert: u("expert_count")?,
        n_used: u("expert_used_count")?,
        n_ff: per_layer_scalar(g, &key("expert_feed_forward_length"), n_layer)?,
        layers,
    }))
}

/// One value per kind of layer from per-layer `values`: every layer of a kind must agree.
fn per_kind(values: &[usize], kinds: &[LayerKind], key: &str) -> Result<PerKind<usize>> {
    let mut out = PerKind::<Option<usize>>::default();
    for (&v, &kind) in values.iter().zip(kinds) {
        match *out.get(kind) {
            None => *out.get_mut(kind) = Some(v),
            Some(seen) if seen == v => {}
            Some(seen) => {
                return Err(ModelError::Config(format!(
                    "{key}: {} layers with {seen} and with {v}: gemlet needs one value per kind \
                     of layer (global, local)",
                    kind.name()
                )))
            }
        }
    }
    let first = values.first().copied().unwrap_or(0);
    Ok(out.map(|v| v.unwrap_or(first)))
}

/// A per-layer key that may be a scalar or an array; gemlet needs the same value in every layer.
fn per_layer_scalar(g: &Gguf, key: &str, n_layer: usize) -> Result<usize> {
    if !matches!(g.get(key), Some(Value::Array(_))) {
        return Ok(g.get_u32(key)? as usize);
    }
    let values = per_layer_values(g, key, n_layer)?;
    match values.first() {
        Some(&v) if values.iter().all(|&x| x == v) => Ok(v),
        _ => Err(ModelError::Config(format!(
            "{key}: per-layer values {values:?} are not supported (one value for all {n_layer} layers)"
        ))),
    }
}

/// A per-layer key that may be a scalar (every layer's) or an array of one value per layer.
fn per_layer_values(g: &Gguf, key: &str, n_layer: usize) -> Result<Vec<usize>> {
    match g.get(key) {
        Some(Value::Array(a)) => {
            let values = a.i64s().ok_or_else(|| {
                ModelError::Gguf(GgufError::KeyType {
                    key: key.into(),
                    expected: "an integer or an array of integers",
                    found: format!("array of {}", a.elem_type()),
                })
            })?;
            if values.len() != n_layer
                || values.iter().any(|&v| !(0..=u32::MAX as i64).contains(&v))
            {
                return Err(ModelError::Config(format!(
                    "{key}: {} values for {n_layer} layers, or one out of range",
                    values.len()
                )));
            }
            Ok(values.iter().map(|&v| v as usize).collect())
        }
        _ => Ok(vec![g.get_u32(key)? as usize; n_layer]),
    }
}

/// llama.cpp's `load_swa_pattern`: an array of bools, or a period n (layer il is local iff
/// `il % n < n - 1`), defaulting to the architecture's period.
fn swa_pattern(
    g: &Gguf,
    key: &str,
    n_layer: usize,
    default_period: usize,
) -> Result<Vec<LayerKind>> {
    let kind = |local: bool| {
        if local {
            LayerKind::Local
        } else {
            LayerKind::Global
        }
    };
    if let Some(Value::Array(a)) = g.get(key) {
        let flags: Vec<bool> = a
            .iter()
            .map(|v| match v {
                Value::Bool(b) => Ok(b),
                other => Err(ModelError::Config(format!(
                    "{key}: element {} is not a bool",
                    other.display(2)
                ))),
            })
            .collect::<Result<_>>()?;
        if flags.len() < n_layer {
            return Err(ModelError::Config(format!(
                "{key}: {} entries for {n_layer} layers",
                flags.len()
            )));
        }
        return Ok(flags[..n_layer].iter().map(|&l| kind(l)).collect());
    }
    let n = g
        .opt(key, Gguf::get_u32)?
        .map_or(default_period, |v| v as usize);
    Ok((0..n_layer)
        .map(|il| kind(n == 0 || il % n < n - 1))
        .collect())
}
