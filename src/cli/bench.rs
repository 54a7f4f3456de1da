//! `gemlet bench`: llama-bench's tests, flags and output (a markdown table, or JSON with
//! llama-bench's field names so that tools reading its output read ours).

use super::args::{on_off, repack_mode, CacheArgs, RunArgs};
use super::CliError;
use crate::bench::{self, Samples, Test, Tokens};
use crate::gguf::{file_type_name, OpenOptions};
use crate::model::weights::Repack;
use crate::model::{Census, Model};
use crate::session::{Session, SessionParams};
use serde_json::json;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Prompt tokens of the pp test (0: none).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens of the tg test (0: none).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Map the model (1) or read it into memory (0); also -mmp.
    #[arg(long = "mmap", default_value = "1", value_parser = on_off, action = clap::ArgAction::Set)]
    pub mmap: bool,
    /// Repack weights for this CPU's kernels: auto (the default: what is faster for each
    /// product, see `generate --help`), 1 (everything, in place, as llama-bench's default) or
    /// 0 (weights used from the map as they are).
    #[arg(long = "repack", default_value = "auto", value_parser = repack_mode, action = clap::ArgAction::Set)]
    pub repack: Repack,
    /// Skip the warm-up run.
    #[arg(long = "no-warmup")]
    pub no_warmup: bool,
    /// Output: md (a table like llama-bench's) or json (llama-bench's fields).
    #[arg(short = 'o', long = "output", default_value = "md", value_parser = ["md", "json"])]
    pub output: String,
}

/// What every row of the report says about the run.
struct Run<'a> {
    path: &'a std::path::Path,
    model_type: String,
    census: Census,
    params: SessionParams,
    mmap: bool,
}

pub fn run(args: &BenchArgs) -> Result<(), CliError> {
    let path = super::model_path(args.run.model.as_deref())?;
    let opts = OpenOptions {
        mmap: args.mmap,
        mlock: false,
    };
    let model = Model::load_with(&path, opts)?;
    let tests: Vec<Test> = [
        (args.n_prompt > 0).then_some(Test::Prompt(args.n_prompt)),
        (args.n_gen > 0).then_some(Test::Generate(args.n_gen)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if tests.is_empty() {
        return Err(CliError::Usage(
            "nothing to run: -p and -n are both 0".into(),
        ));
    }
    // The context holds the longest test, as llama-bench sizes it.
    let n_ctx = tests
        .iter()
        .map(|t| t.n_prompt() + t.n_gen())
        .max()
        .unwrap_or(1);
    // Checked before any token list is built (-p 100000000 built 400 MB before failing).
    let n_ctx_train = model.config().dims.n_ctx_train;
    if n_ctx > n_ctx_train {
        return Err(CliError::Usage(format!(
            "-p and -n ask for a context of {n_ctx} tokens; the model's is {n_ctx_train}"
        )));
    }
    let params = SessionParams {
        n_ctx,
        cache: args.cache.params(),
        repack: args.repack,
        // Each test warms up on its own shape (llama-bench's warm-up), below.
        warmup: false,
        ..args.run.session_params()
    };
    let mut session = Session::new(&model, params)?;
    let census = Census::of(model.gguf());
    let run = Run {
        path: &path,
        model_type: model_type(&model, &census),
        census,
        params: session.params(),
        mmap: args.mmap,
    };
    let mut tokens = Tokens::new(model.config().dims.n_vocab, model.tokenizer().bos());
    let md = args.output == "md";
    if md {
        super::print(&table_header(&run))?;
    }
    let mut rows = Vec::new();
    for &test in &tests {
        let samples = bench::run(&mut session, test, args.reps, !args.no_warmup, &mut tokens)?;
        if md {
            super::print(&table_row(&run, &samples))?;
        }
        rows.push(json_row(&run, &samples));
    }
    if md {
        super::print(&format!(
            "\nbuild: gemlet {} ({})\n",
            env!("CARGO_PKG_VERSION"),
            crate::ggml::build_info()
        ))?;
    } else {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| CliError::Usage(e.to_string()))?;
        super::print(&format!("{text}\n"))?;
    }
    Ok(())
}

/// llama-bench's "model" column: architecture, size label, file type ("gemma3 270M Q4_K_M").
fn model_type(model: &Model, census: &Census) -> String {
    let g = model.gguf();
    let size = g
        .get_str("general.size_label")
        .map(|s| s.to_uppercase())
        .unwrap_or_else(|_| super::fmt::short_count(census.parameter_count));
    let ftype = g
        .get_u32("general.file_type")
        .ok()
        .and_then(file_type_name)
        .unwrap_or("?");
    format!("{} {size} {ftype}", model.config().arch.name())
}

/// Columns beyond llama-bench's defaults appear only when they differ from the defaults, as in
/// llama-bench.
fn extra_columns(run: &Run<'_>) -> Vec<(&'static str, String)> {
    let p = &run.params;
    let mut cols = Vec::new();
    if p.cache.type_k != crate::ggml::Type::F16 {
        cols.push(("type_k", p.cache.type_k.to_string()));
    }
    if p.cache.type_v != crate::ggml::Type::F16 {
        cols.push(("type_v", p.cache.type_v.to_string()));
    }
    if !p.flash_attn {
        cols.push(("fa", "0".to_string()));
    }
    if !run.mmap {
        cols.push(("mmap", "0".to_string()));
    }
    match p.repack {
        Repack::Auto => {}
        Repack::All => cols.push(("repack", "1".to_string())),
        Repack::Off => cols.push(("repack", "0".to_string())),
    }
    cols
}

/// Column widths and alignment of llama-bench's table (negative: left-aligned).
const COLUMNS: [(&str, i32); 7] = [
    ("model", -30),
    ("size", 10),
    ("params", 10),
    ("backend", -10),
    ("threads", 7),
    ("test", 15),
    ("t/s", 20),
];

fn table_line(cells: &[(String, i32)]) -> String {
    let cells: Vec<String> = cells
        .iter()
        .map(|(v, w)| {
            let n = w.unsigned_abs() as usize;
            if *w < 0 {
                format!("{v:<n$}")
            } else {
                format!("{v:>n$}")
            }
        })
        .collect();
    format!("| {} |\n", cells.join(" | "))
}

/// The table's columns with the run's extra ones after `threads`, as llama-bench orders them.
fn columns(run: &Run<'_>, values: [String; 7]) -> Vec<(String, i32)> {
    let mut cells: Vec<(String, i32)> = values
        .into_iter()
        .zip(COLUMNS)
        .map(|(v, (_, w))| (v, w))
        .collect();
    let extra = extra_columns(run);
    let at = 5;
    for (i, (name, v)) in extra.into_iter().enumerate() {
        let w = name.len().max(5) as i32;
        cells.insert(at + i, (v, w));
    }
    cells
}

fn table_header(run: &Run<'_>) -> String {
    let names = COLUMNS.map(|(n, _)| n.to_string());
    let mut head = columns(run, names);
    for (i, (name, _)) in extra_columns(run).into_iter().enumerate() {
        head[5 + i].0 = name.to_string();
    }
    let rule: Vec<(String, i32)> = head
        .iter()
        .map(|(_, w)| {
            let n = w.unsigned_abs() as usize;
            let r = if *w < 0 {
                "-".repeat(n)
            } else {
                format!("{}:", "-".repeat(n - 1))
            };
            (r, *w)
        })
        .collect();
    format!("{}{}", table_line(&head), table_line(&rule))
}

fn table_row(run: &Run<'_>, s: &Samples) -> String {
    let values = [
        run.model_type.clone(),
        format!(
            "{:.2} MiB",
            run.census.weight_bytes as f64 / (1 << 20) as f64
        ),
        format!("{:.2} M", run.census.parameter_count as f64 / 1e6),
        "CPU".to_string(),
        run.params.n_threads.to_string(),
        s.test.name(),
        format!("{:.2} ± {:.2}", s.avg_ts(), s.stddev_ts()),
    ];
    table_line(&columns(run, values))
}

fn json_row(run: &Run<'_>, s: &Samples) -> serde_json::Value {
    let p = &run.params;
    json!({
        "build_commit": env!("CARGO_PKG_VERSION"),
        "build_number": 0,
        "cpu_info": cpu_name(),
        "gpu_info": "",
        "backends": "CPU",
        "model_filename": run.path.display().to_string(),
        "model_type": run.model_type,
        "model_size": run.census.weight_bytes,
        "model_n_params": run.census.parameter_count,
        "n_batch": p.n_batch,
        "n_ubatch": p.n_batch,
        "n_threads": p.n_threads,
        "type_k": p.cache.type_k.name(),
        "type_v": p.cache.type_v.name(),
        "n_gpu_layers": 0,
        "flash_attn": i32::from(p.flash_attn),
        "use_mmap": run.mmap,
        // llama-bench's field is a bool: whether anything is repacked.
        "repack": p.repack != Repack::Off,
        "repack_mode": format!("{:?}", p.repack).to_lowercase(),
        "embeddings": false,
        "n_prompt": s.test.n_prompt(),
        "n_gen": s.test.n_gen(),
        "n_depth": 0,
        "test_time": now_rfc3339(),
        "avg_ns": s.avg_ns().round() as u64,
        "stddev_ns": s.stddev_ns().round() as u64,
        "avg_ts": s.avg_ts(),
        "stddev_ts": s.stddev_ts(),
        "samples_ns": s.ns,
        "samples_ts": s.ts(),
    })
}

/// The CPU's model name, as llama-bench's `cpu_info`.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// UTC time as `2026-12-01T07:25:21Z` (civil-from-days, Howard Hinnant's algorithm).
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
