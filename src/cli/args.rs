//! Flags shared by the commands that run a model, with llama.cpp's names and defaults.

use crate::ggml::Type;
use crate::gguf::OpenOptions;
use crate::model::kv_cache::{CacheParams, CACHE_TYPES};
use crate::model::weights::Repack;
use crate::sampling::SamplerParams;
use crate::session::{default_threads, SessionParams};
use std::path::PathBuf;

/// llama.cpp's flags that are several letters after one dash, which clap's short options
/// cannot be: they are rewritten to their long names before parsing.
pub const LLAMA_SHORT_FLAGS: [(&str, &str); 6] = [
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
    ("-fa", "--flash-attn"),
    ("-mmp", "--mmap"),
    ("-nr", "--no-repack"),
    ("-ub", "--ubatch-size"),
];

/// A KV cache type by ggml's name.
fn cache_type(s: &str) -> Result<Type, String> {
    Type::from_name(s)
        .filter(|t| CACHE_TYPES.contains(t))
        .ok_or_else(|| {
            format!(
                "'{s}' is not a KV cache type: use one of {}",
                CACHE_TYPES.map(|t| t.name()).join(", ")
            )
        })
}

/// `on`/`off`/`auto` (llama.cpp's `-fa`), or `1`/`0` (llama-bench's). On the CPU `auto` is on.
pub fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "1" | "true" | "auto" => Ok(true),
        "off" | "0" | "false" => Ok(false),
        _ => Err(format!("'{s}': use on, off or auto")),
    }
}

/// llama-bench's `--repack 0|1`, and `auto` (the default: see [`Repack::Auto`]).
pub fn repack_mode(s: &str) -> Result<Repack, String> {
    match s.to_ascii_lowercase().as_str() {
        "auto" => Ok(Repack::Auto),
        "on" | "1" | "true" => Ok(Repack::All),
        "off" | "0" | "false" => Ok(Repack::Off),
        _ => Err(format!("'{s}': use auto, 1 or 0")),
    }
}

/// KV cache flags (llama.cpp's names).
#[derive(clap::Args, Clone)]
pub struct CacheArgs {
    /// KV cache type for keys (f16, q8_0, q4_0, ...); also -ctk.
    #[arg(long = "cache-type-k", default_value = "f16", value_parser = cache_type)]
    pub cache_type_k: Type,
    /// KV cache type for values (quantized needs flash attention); also -ctv.
    #[arg(long = "cache-type-v", default_value = "f16", value_parser = cache_type)]
    pub cache_type_v: Type,
    /// Keep every position in sliding-window layers too (no ring of the window).
    #[arg(long = "swa-full")]
    pub swa_full: bool,
}

impl CacheArgs {
    pub fn params(&self) -> CacheParams {
        CacheParams {
            type_k: self.cache_type_k,
            type_v: self.cache_type_v,
            swa_full: self.swa_full,
        }
    }
}

/// `-t n`, at most the CPUs this process may run on (its affinity and cgroup quota): ggml's
/// workers wait for each other spinning, and more of them than CPUs starve one another (4
/// tokens took 25 s with -t 3 on 2 CPUs, and -t 8 did not finish).
fn capped_threads(n: usize) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    if n > cpus {
        eprintln!("warning: -t {n}, but this process may use {cpus} CPUs: running {cpus} threads");
    }
    n.clamp(1, cpus)
}

/// The flags of every command that runs a model: generate, chat, bench and perplexity.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// Model file (default: ~/.cache/gemlet/models/gemma-3-270m-q4_k_m.gguf).
    #[arg(short = 'm', long = "model")]
    pub model: Option<PathBuf>,
    /// Batch size for prompt processing (llama-bench's micro-batch, -ub, too).
    #[arg(
        short = 'b',
        long = "batch-size",
        alias = "ubatch-size",
        default_value_t = SessionParams::default().n_batch,
        allow_negative_numbers = true
    )]
    pub batch_size: usize,
    /// Threads (default: physical cores).
    #[arg(short = 't', long = "threads", allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Flash attention: on, off or auto (on); also -fa, and 1 or 0 as llama-bench takes.
    #[arg(long = "flash-attn", default_value = "auto", value_parser = on_off, action = clap::ArgAction::Set)]
    pub flash_attn: bool,
}

impl RunArgs {
    /// Session parameters of these flags, the rest the library's defaults.
    pub fn session_params(&self) -> SessionParams {
        SessionParams {
            n_batch: self.batch_size,
            n_threads: self.threads.map_or_else(default_threads, capped_threads),
            flash_attn: self.flash_attn,
            ..SessionParams::default()
        }
    }
}

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Context size in tokens (capped at the model's training context).
    #[arg(short = 'c', long = "ctx-size", default_value_t = SessionParams::default().n_ctx, allow_negative_numbers = true)]
    pub ctx_size: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Read the model into memory instead of mapping it (on transparent huge pages where the
    /// kernel allows: faster token generation, slower load).
    #[arg(long = "no-mmap")]
    pub no_mmap: bool,
    /// Lock the model in RAM so it is never paged out.
    #[arg(long = "mlock")]
    pub mlock: bool,
    /// Start even if the memory plan says it will not fit in available memory.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub repack: RepackArgs,
    /// Skip the one-token warm-up at load (it makes the first prompt faster).
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
}

impl ModelArgs {
    pub fn session_params(&self) -> SessionParams {
        SessionParams {
            n_ctx: self.ctx_size,
            cache: self.cache.params(),
            force: self.force,
            repack: self.repack.mode(),
            warmup: !self.no_warmup,
            ..self.run.session_params()
        }
    }

    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            mmap: !self.no_mmap,
            mlock: self.mlock,
        }
    }
}

/// llama.cpp's weight-repacking flags (generate, chat, perplexity, ...).
#[derive(clap::Args, Clone)]
pub struct RepackArgs {
    /// Repack every weight matrix ggml has interleaved kernels for on this CPU (Q4_0, Q4_K,
    /// IQ4_NL on AVX2; more with NEON dotprod/i8mm) in place, as llama.cpp does. By default
    /// only types whose repacked kernels are faster for single tokens too are (Q4_0, IQ4_NL);
    /// K-quants get a repacked copy for prompts while generation reads the map.
    #[arg(long = "repack", overrides_with = "no_repack")]
    pub repack: bool,
    /// Use every weight from the map as it is: no repacking, no copy; also -nr.
    #[arg(long = "no-repack", overrides_with = "repack")]
    pub no_repack: bool,
}

impl RepackArgs {
    pub fn mode(&self) -> Repack {
        if self.repack {
            Repack::All
        } else if self.no_repack {
            Repack::Off
        } else {
            Repack::Auto
        }
    }
}

#[derive(clap::Args, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy.
    #[arg(long = "temp", allow_negative_numbers = true, default_value_t = SamplerParams::default().temp)]
    pub temp: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long = "top-k", default_value_t = SamplerParams::default().top_k)]
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities add up to p (1.0: all).
    #[arg(long = "top-p", default_value_t = SamplerParams::default().top_p)]
    pub top_p: f32,
    /// Drop tokens less likely than min-p times the most likely one.
    #[arg(long = "min-p", default_value_t = SamplerParams::default().min_p)]
    pub min_p: f32,
    /// Penalize repeating tokens of the last --repeat-last-n (1.0: off).
    #[arg(long = "repeat-penalty", default_value_t = SamplerParams::default().repeat_penalty)]
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    #[arg(long = "repeat-last-n", default_value_t = SamplerParams::default().repeat_last_n)]
    pub repeat_last_n: usize,
    /// Subtracted once from the logit of every recent token.
    #[arg(long = "presence-penalty", allow_negative_numbers = true, default_value_t = SamplerParams::default().presence_penalty)]
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of every recent token.
    #[arg(long = "frequency-penalty", allow_negative_numbers = true, default_value_t = SamplerParams::default().frequency_penalty)]
    pub frequency_penalty: f32,
    /// Random seed (default: a random one).
    #[arg(short = 's', long = "seed")]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// The sampler's parameters, each checked against its range ([`SamplerParams::check`]).
    pub fn params(&self) -> Result<SamplerParams, super::CliError> {
        let seed = self.seed.unwrap_or_else(|| {
            use std::time::{SystemTime, UNIX_EPOCH};
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let p = SamplerParams {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed,
        };
        p.check().map_err(super::CliError::Usage)?;
        Ok(p)
    }
}
