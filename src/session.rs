//! A session: one conversation's state over a loaded [`Model`] (KV cache, compute buffer,
//! thread pool), evaluating tokens and generating text.

use crate::ggml::{Allocator, Context, Executor, GgmlError};
use crate::model::gemma::{self, BatchShape, Forward, Head};
use crate::model::kv_cache::{CacheLayout, CacheParams, ContextSize, KvCache};
use crate::model::weights::{Repack, Weights};
use crate::model::{Census, MemoryPlan, Model, ModelError, PerKind, Pooling, RowTable};
use crate::sampling::Sampler;
use crate::tokenizer::{TokenId, TokenizerError};
use std::sync::atomic::AtomicBool;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Ggml(#[from] GgmlError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(
        "{n} tokens do not fit in the context: {used} of {n_ctx} positions are used (raise -c)"
    )]
    ContextFull { n: usize, used: usize, n_ctx: usize },
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken { id: TokenId, n_vocab: usize },
    #[error("nothing to evaluate")]
    Empty,
    #[error("the model computed a logit of {value} at position {position}: its weights or metadata are broken (non-finite numbers)")]
    NonFiniteLogits { position: usize, value: f32 },
    #[error("a context of {n_ctx} tokens is too small here: use -c {needed} or more")]
    ContextTooSmall { n_ctx: usize, needed: usize },
    #[error(
        "the text has {got} tokens; perplexity with a context of {n_ctx} needs at least {needed}"
    )]
    TextTooShort {
        needed: usize,
        got: usize,
        n_ctx: usize,
    },
    #[error("a {0} V cache needs flash attention (-fa on); without it V must be f16, bf16 or f32")]
    QuantizedVNeedsFlashAttn(crate::ggml::Type),
    #[error("{0}\n(pass --force to try anyway)")]
    WontFit(String),
    #[error("stopped")]
    Stopped,
    #[error("{arch} is an embedding model (bidirectional attention, no output head): it makes embeddings (`gemlet embed`), not text")]
    EmbeddingModel { arch: &'static str },
    #[error("the text has {n} tokens, more than the batch size ({n_batch}): an embedding is computed in one batch (raise -b and -c)")]
    TextTooLong { n: usize, n_batch: usize },
}

pub type Result<T> = std::result::Result<T, SessionError>;

#[derive(Debug, Clone, Copy)]
pub struct SessionParams {
    /// Context size in tokens (capped at the model's training context).
    pub n_ctx: usize,
    /// Tokens per forward pass when evaluating a prompt.
    pub n_batch: usize,
    pub n_threads: usize,
    /// KV cache types and layout.
    pub cache: CacheParams,
    /// ggml's fused flash attention (as llama.cpp's `-fa`); off, softmax(q·kᵀ)·v in three ops.
    pub flash_attn: bool,
    /// Start even when the memory plan says the session will not fit in available memory.
    pub force: bool,
    /// The weights' layout for ggml's CPU kernels (see [`Repack`]).
    pub repack: Repack,
    /// Evaluate one token at creation and forget it (llama.cpp's warm-up; `--no-warmup`
    /// skips it). The first pass over the weights after load runs measurably slower than
    /// later ones: this moves that cost out of the first prompt, and builds the one-token
    /// graph every generated token reuses.
    pub warmup: bool,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams {
            n_ctx: 4096,
            n_batch: 512,
            n_threads: default_threads(),
            cache: CacheParams::default(),
            flash_attn: true,
            force: false,
            repack: Repack::Auto,
            warmup: true,
        }
    }
}

/// Physical cores, as llama.cpp defaults to (`available_parallelism` counts logical CPUs).
pub fn default_threads() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    physical_cores().unwrap_or(logical).clamp(1, logical)
}

fn physical_cores() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = std::collections::HashSet::new();
    let (mut phys, mut core) = (None, None);
    for line in info.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let (Some(p), Some(c)) = (phys.take(), core.take()) {
                cores.insert((p, c));
            }
            continue;
        }
        let (k, v) = line.split_once(':')?;
        match k.trim() {
            "physical id" => phys = Some(v.trim().to_string()),
            "core id" => core = Some(v.trim().to_string()),
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

pub struct Session<'m> {
    model: &'m Model,
    weights: Weights<'m>,
    /// What the session was planned to take, checked against available memory at creation.
    plan: MemoryPlan,
    cache: KvCache,
    exec: Executor,
    alloc: Allocator,
    params: SessionParams,
    /// Tokens evaluated so far (position i holds tokens[i]).
    tokens: Vec<TokenId>,
    /// Logits of the last evaluation: rows of n_vocab.
    logits: Vec<f32>,
    /// The last embedding: one row of n_embd, or one per token without pooling.
    embedding: Vec<f32>,
    /// The last batch's graph and the metadata-only context it lives in. A batch of the same
    /// shape (every token of a generation, for `KV_PAD` tokens at a time) computes it again
    /// with new inputs: no graph is built and nothing is allocated.
    graph: Option<(Context<'static>, Forward)>,
    /// Graphs built so far (a measure of the reuse above).
    graphs_built: usize,
    // Input buffers reused from batch to batch.
    positions: Vec<i32>,
    ids: Vec<i32>,
}

impl<'m> Session<'m> {
    /// A session of `params`, whose context and batch sizes are resolved here once (see
    /// [`ContextSize`]); [`Session::params`] gives the resolved ones.
    pub fn new(model: &'m Model, params: SessionParams) -> Result<Session<'m>> {
        let c = model.config();
        let size = ContextSize::resolve(params.n_ctx, params.n_batch, c.dims.n_ctx_train);
        let params = SessionParams {
            n_ctx: size.n_ctx,
            n_batch: size.n_batch,
            n_threads: params.n_threads.max(1),
            ..params
        };
        let ty_v = params.cache.type_v;
        if !params.flash_attn && ty_v.is_quantized() {
            return Err(SessionError::QuantizedVNeedsFlashAttn(ty_v));
        }
        let mut weights = Weights::bind(model.gguf(), c, params.repack)?;
        let layout = CacheLayout::new(c, size, params.cache.swa_full);
        let weight_bytes = Census::of(model.gguf()).weight_bytes;
        let row_table = RowTable::of(model.gguf());
        let plan = MemoryPlan::new(
            &c.dims,
            &layout,
            weight_bytes,
            row_table,
            c.experts.as_ref(),
            params.cache,
        );
        if !plan.fits() && !params.force {
            return Err(SessionError::WontFit(plan.refusal()));
        }
        weights.repack(model.gguf(), params.repack)?;
        let mut session = Session {
            model,
            weights,
            plan,
            cache: KvCache::new(&layout, params.cache)?,
            exec: Executor::new(params.n_threads)?,
            alloc: Allocator::new()?,
            params,
            tokens: Vec::with_capacity(size.n_ctx),
            logits: Vec::new(),
            embedding: Vec::new(),
            graph: None,
            graphs_built: 0,
            positions: Vec::with_capacity(size.n_batch),
            ids: Vec::with_capacity(size.n_batch),
        };
        if params.warmup {
            session.warm_up()?;
        }
        Ok(session)
    }

    /// Evaluates one token (BOS, else id 0, as llama.cpp) and forgets it.
    fn warm_up(&mut self) -> Result<()> {
        let id = self.model.tokenizer().bos().unwrap_or(0);
        match &self.model.config().embedding {
            None => self.eval(&[id])?,
            Some(h) => {
                self.embed(&[id], h.pooling)?;
            }
        }
        self.clear();
        Ok(())
    }

    /// Graphs built so far: one per batch shape, not one per token.
    pub fn graphs_built(&self) -> usize {
        self.graphs_built
    }

    /// Matrices this session's weights hold repacked, and their bytes (`repack`).
    pub fn repacked(&self) -> (usize, usize) {
        self.weights.repacked
    }

    /// The memory plan the session was created under: weights, KV cache, compute.
    pub fn memory_plan(&self) -> &MemoryPlan {
        &self.plan
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    pub fn params(&self) -> SessionParams {
        self.params
    }

    /// Positions used so far.
    pub fn n_past(&self) -> usize {
        self.tokens.len()
    }

    /// The tokens evaluated so far.
    pub fn tokens(&self) -> &[TokenId] {
        &self.tokens
    }

    /// Bytes of the KV cache and of the compute buffer (as large as the largest batch so far).
    pub fn memory_bytes(&self) -> (usize, usize) {
        (self.cache.bytes(), self.alloc.buffer_size())
    }

    /// Forgets the conversation.
    pub fn clear(&mut self) {
        self.cache.clear();
        self.tokens.clear();
        self.logits.clear();
    }

    /// Forgets positions from `n` on.
    pub fn truncate(&mut self, n: usize) {
        if n < self.tokens.len() {
            self.cache.truncate(n);
            self.tokens.truncate(n);
            self.logits.clear();
        }
    }

    /// Evaluates `tokens` after those already in the session; afterwards [`Session::logits`]
    /// holds the last token's logits.
    pub fn eval(&mut self, tokens: &[TokenId]) -> Result<()> {
        let last = self.n_past() + tokens.len().max(1) - 1;
        self.eval_inner(tokens, last, None)
    }

    /// Like [`Session::eval`], but keeps the logits of every token: row i of
    /// [`Session::logits`] predicts the token after `tokens[i]`.
    pub fn eval_all(&mut self, tokens: &[TokenId]) -> Result<()> {
        self.eval_inner(tokens, self.n_past(), None)
    }

    /// Like [`Session::eval`], but keeps the logits of the tokens at positions `from` and later
    /// (one row each, in order).
    pub fn eval_from(&mut self, tokens: &[TokenId], from: usize) -> Result<()> {
        self.eval_inner(tokens, from, None)
    }

    /// Like [`Session::eval`], stopping early (with [`SessionError::Stopped`], positions of
    /// the interrupted batch forgotten) once `stop` is set.
    pub fn eval_abortable(&mut self, tokens: &[TokenId], stop: &AtomicBool) -> Result<()> {
        let last = self.n_past() + tokens.len().max(1) - 1;
        self.eval_inner(tokens, last, Some(stop))
    }

    /// Logits of the last evaluation (one row of n_vocab per kept token).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The embedding of a text of `tokens` (with BOS, and EOS where the tokenizer adds it),
    /// as llama.cpp's `llama-embedding` computes it: every token in one batch, the hidden
    /// states after the output norm pooled by `pooling`, through the model's dense
    /// projections; one row of n_embd, or with [`Pooling::None`] one per token. Not
    /// normalised. The text is forgotten afterwards: each embedding stands alone.
    pub fn embed(&mut self, tokens: &[TokenId], pooling: Pooling) -> Result<&[f32]> {
        self.check_tokens(tokens)?;
        if tokens.len() > self.params.n_batch {
            return Err(SessionError::TextTooLong {
                n: tokens.len(),
                n_batch: self.params.n_batch,
            });
        }
        self.clear();
        let result = self.eval_batch(tokens, 0, None, Head::Embedding(pooling));
        self.clear();
        result?;
        Ok(&self.embedding)
    }

    /// Refuses an empty batch, an id past the vocabulary, or more tokens than the context has
    /// room for.
    fn check_tokens(&self, tokens: &[TokenId]) -> Result<()> {
        if tokens.is_empty() {
            return Err(SessionError::Empty);
        }
        let n_vocab = self.model.config().dims.n_vocab;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(SessionError::BadToken { id, n_vocab });
        }
        if self.n_past() + tokens.len() > self.params.n_ctx {
            return Err(SessionError::ContextFull {
                n: tokens.len(),
                used: self.n_past(),
                n_ctx: self.params.n_ctx,
            });
        }
        Ok(())
    }

    /// Evaluates `tokens`, keeping the logits of positions `from` and later.
    fn eval_inner(
        &mut self,
        tokens: &[TokenId],
        from: usize,
        stop: Option<&AtomicBool>,
    ) -> Result<()> {
        let c = self.model.config();
        if c.embedding.is_some() {
            return Err(SessionError::EmbeddingModel {
                arch: c.arch.name(),
            });
        }
        self.check_tokens(tokens)?;
        self.logits.clear();
        for chunk in tokens.chunks(self.params.n_batch) {
            let start = self.n_past();
            if let Err(e) = self.eval_batch(chunk, from, stop, Head::Logits) {
                self.truncate(start);
                self.logits.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    /// One forward pass over at most n_batch tokens; appends the logits of positions `from`
    /// and later to `self.logits`, or with an embedding head sets `self.embedding`.
    fn eval_batch(
        &mut self,
        tokens: &[TokenId],
        from: usize,
        stop: Option<&AtomicBool>,
        head: Head,
    ) -> Result<()> {
        let p0 = self.n_past();
        self.positions.clear();
        self.positions
            .extend((0..tokens.len()).map(|i| (p0 + i) as i32));
        self.ids.clear();
        self.ids.extend(tokens.iter().map(|&t| t as i32));
        // The kept rows are the batch's last ones; the graph computes at least one, so that
        // it has an end.
        let wanted = match head {
            Head::Logits => tokens.len() - from.saturating_sub(p0).min(tokens.len()),
            Head::Embedding(_) => tokens.len(),
        };
        self.cache.assign(&self.positions);
        let batch = self.cache.batch();
        let shape = BatchShape {
            n_tokens: tokens.len(),
            n_kv: PerKind::new(|kind| batch.get(kind).as_ref().map_or(0, |p| p.n_kv)),
            n_out: (wanted < tokens.len()).then_some(wanted.max(1)),
            head,
        };
        if self.graph.as_ref().is_none_or(|(_, f)| f.shape != shape) {
            // Drop the old graph first: the allocator's buffer it points into is reused.
            self.graph = None;
            let size = gemma::graph_size(self.model.config());
            let ctx = Context::metadata_only(2 * size, size)?;
            let f = gemma::build(
                &ctx,
                self.model.config(),
                &self.weights,
                &self.cache,
                shape,
                self.params.flash_attn,
            )?;
            self.alloc.alloc_graph(&ctx.resolve_graph(f.graph))?;
            self.graphs_built += 1;
            self.graph = Some((ctx, f));
        }
        let (ctx, f) = self.graph.as_ref().expect("built above");
        let t = |id| ctx.resolve(id);
        t(f.tokens).write_i32(&self.ids)?;
        t(f.positions).write_i32(&self.positions)?;
        if let Some(mean) = f.mean {
            let weights = vec![1.0 / tokens.len() as f32; tokens.len()];
            t(mean).write_f32(&weights)?;
        }
        for (kind, slots) in batch.iter() {
            if let (Some(slots), Some(input)) = (slots, f.attn_inputs.get(kind)) {
                t(input.slots).write_i32(slots.slots)?;
                t(input.mask).write_f16(slots.mask)?;
            }
        }
        let graph = ctx.resolve_graph(f.graph);
        match stop {
            Some(flag) => self.exec.compute_abortable(&graph, flag),
            None => self.exec.compute(&graph),
        }
        .map_err(|e| match e {
            GgmlError::Aborted => SessionError::Stopped,
            e => e.into(),
        })?;
        let (out, row) = match head {
            Head::Logits => (&mut self.logits, self.model.config().dims.n_vocab),
            Head::Embedding(_) => {
                self.embedding.clear();
                (&mut self.embedding, self.model.config().dims.n_embd)
            }
        };
        if wanted > 0 {
            let start = out.len();
            t(f.output).read_f32_into(out)?;
            // A model whose numbers overflow (a crafted or broken file) would otherwise have
            // garbage sampled from it.
            if let Some(i) = out[start..].iter().position(|x| !x.is_finite()) {
                return Err(SessionError::NonFiniteLogits {
                    position: p0 + tokens.len() - wanted + i / row,
                    value: out[start + i],
                });
            }
        }
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }

    /// Generates up to `n_predict` tokens after the evaluated ones, calling `on_text` with text
    /// as it becomes complete (whole characters; control tokens are not printed); stops at end
    /// of generation, at the end of the context, or when `on_text` returns false. Every
    /// generated token but the last is evaluated (in the session's tokens) on return.
    pub fn generate(
        &mut self,
        sampler: &mut Sampler,
        n_predict: usize,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.generate_with_top(sampler, n_predict, 0, on_text)
    }

    /// [`Session::generate`], recording for every generated token the `n_probs` highest raw
    /// logits it was sampled from (`generate --n-probs`, the server's logprobs).
    pub fn generate_with_top(
        &mut self,
        sampler: &mut Sampler,
        n_predict: usize,
        n_probs: usize,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let tok = self.model.tokenizer();
        let mut stream = tok.stream(true);
        let mut ids = Vec::new();
        let mut top = Vec::new();
        if self.logits.is_empty() {
            return Err(SessionError::Empty);
        }
        let n_vocab = self.model.config().dims.n_vocab;
        let mut stop = Stop::Limit;
        for i in 0..n_predict {
            let last = &self.logits[self.logits.len() - n_vocab..];
            let id = sampler.sample(last, &self.tokens);
            if tok.is_eog(id) {
                stop = Stop::EndOfGeneration;
                break;
            }
            ids.push(id);
            if n_probs > 0 {
                top.push(crate::sampling::top_logits(last, n_probs));
            }
            let text = stream.push(id)?;
            if !on_text(&text) {
                stop = Stop::Interrupted;
                break;
            }
            if i + 1 == n_predict {
                break;
            }
            if self.n_past() >= self.params.n_ctx {
                stop = Stop::ContextFull;
                break;
            }
            self.eval(&[id])?;
        }
        let rest = stream.finish();
        if !rest.is_empty() {
            on_text(&rest);
        }
        Ok(Generation {
            ids,
            stop,
            top_logits: top,
        })
    }
}

/// What [`Session::generate`] produced and why it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated ids (an end-of-generation token is not included).
    pub ids: Vec<TokenId>,
    pub stop: Stop,
    /// Per generated token, the highest raw logits (id, logit), best first, when asked for.
    pub top_logits: Vec<Vec<(TokenId, f32)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The model ended its turn (an end-of-generation token).
    EndOfGeneration,
    /// `n_predict` tokens were generated.
    Limit,
    /// The caller's callback asked to stop.
    Interrupted,
    /// No position is left in the context.
    ContextFull,
}
