//! Compiles the vendored ggml CPU backend with the `cc` crate (no cmake), choosing instruction-set
//! flags from the *target* cargo describes, never from the machine the build script runs on.
//!
//! CPU level (`GEMLET_CPU`):
//! - unset: `native` when building for the machine itself (like ggml's GGML_NATIVE), otherwise the
//!   features the Rust target enables (`-C target-cpu=...`, `-C target-feature=...`) on top of a
//!   portable baseline for the architecture.
//! - `native`, or an explicit level: `x86-64`, `x86-64-v2`, `x86-64-v3`, `x86-64-v4`;
//!   `armv8-a`, `armv8.2-a+dotprod`, `armv8.2-a+dotprod+fp16` (any `-march` value for aarch64);
//!   `neon-vfpv4` or `vfpv3-d16` for armv7.

use std::collections::HashSet;
use std::env;
use std::path::{Path, PathBuf};

/// Upstream version of vendor/ggml, written into the generated ggml-version.h (see vendor/ggml/VERSION).
const GGML_VERSION: &str = "0.25.3";
const GGML_COMMIT: &str = "0c1e570";

struct Target {
    arch: String,
    os: String,
    features: HashSet<String>,
    is_host: bool,
}

impl Target {
    fn from_env() -> Target {
        let var = |k: &str| env::var(k).unwrap_or_default();
        Target {
            arch: var("CARGO_CFG_TARGET_ARCH"),
            os: var("CARGO_CFG_TARGET_OS"),
            features: var("CARGO_CFG_TARGET_FEATURE")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            is_host: var("TARGET") == var("HOST"),
        }
    }

    fn has(&self, f: &str) -> bool {
        self.features.contains(f)
    }

    /// ggml's per-architecture source folder (`ggml-cpu/arch/<dir>`), if it has one for us.
    fn arch_dir(&self) -> Option<&'static str> {
        match self.arch.as_str() {
            "x86_64" | "x86" => Some("x86"),
            "aarch64" | "arm" => Some("arm"),
            _ => None,
        }
    }
}

/// The gcc ISA flags for ggml, and a human-readable name of the level, for `gemlet --version`.
fn isa_flags(t: &Target, level: Option<&str>) -> (Vec<String>, String) {
    let level = level
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "auto");
    let native = level == Some("native") || (level.is_none() && t.is_host);
    match t.arch.as_str() {
        "x86_64" | "x86" => {
            if native {
                return (vec!["-march=native".into()], "native".into());
            }
            if let Some(l) = level {
                return (vec![format!("-march={l}")], l.to_string());
            }
            let map = [
                ("sse3", "-msse3"),
                ("ssse3", "-mssse3"),
                ("sse4.1", "-msse4.1"),
                ("sse4.2", "-msse4.2"),
                ("popcnt", "-mpopcnt"),
                ("avx", "-mavx"),
                ("avx2", "-mavx2"),
                ("fma", "-mfma"),
                ("f16c", "-mf16c"),
                ("bmi2", "-mbmi2"),
                ("avxvnni", "-mavxvnni"),
                ("avx512f", "-mavx512f"),
                ("avx512cd", "-mavx512cd"),
                ("avx512vl", "-mavx512vl"),
                ("avx512dq", "-mavx512dq"),
                ("avx512bw", "-mavx512bw"),
                ("avx512vbmi", "-mavx512vbmi"),
                ("avx512vnni", "-mavx512vnni"),
                ("avx512bf16", "-mavx512bf16"),
            ];
            let flags: Vec<String> = map
                .iter()
                .filter(|(rf, _)| t.has(rf))
                .map(|(_, cf)| cf.to_string())
                .collect();
            let name = if flags.is_empty() {
                "x86-64".to_string()
            } else {
                format!("x86-64 {}", flags.join(" "))
            };
            (flags, name)
        }
        "aarch64" => {
            if native {
                return (vec!["-mcpu=native".into()], "native".into());
            }
            if let Some(l) = level {
                return (vec![format!("-march={l}")], l.to_string());
            }
            let mut base = "armv8-a";
            let mut ext = String::new();
            for (f, e, b) in [
                ("dotprod", "+dotprod", "armv8.2-a"),
                ("fp16", "+fp16", "armv8.2-a"),
                ("sve", "+sve", "armv8.2-a"),
                ("i8mm", "+i8mm", "armv8.6-a"),
            ] {
                if t.has(f) {
                    base = b;
                    ext.push_str(e);
                }
            }
            let march = format!("{base}{ext}");
            (vec![format!("-march={march}")], march)
        }
        "arm" => {
            // rustc's armv7 target is "-neon", and ggml's cmake adds no NEON flag for armv7 either:
            // without these flags ggml silently falls back to scalar code on every Pi.
            let fpu = match level {
                Some("native") | None => "neon-vfpv4",
                Some(l) => l,
            };
            let flags = vec![
                "-march=armv7-a".to_string(),
                "-mfloat-abi=hard".to_string(),
                format!("-mfpu={fpu}"),
                "-mfp16-format=ieee".to_string(),
            ];
            (flags, format!("armv7-a {fpu}"))
        }
        _ => (Vec::new(), "generic".into()),
    }
}

/// The translation units of the CPU backend (keep in sync with scripts/vendor-ggml.sh).
fn sources(ggml: &Path, arch_dir: Option<&str>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let src = ggml.join("src");
    let cpu = src.join("ggml-cpu");
    let mut c = vec![
        src.join("ggml.c"),
        src.join("ggml-alloc.c"),
        src.join("ggml-quants.c"),
        cpu.join("ggml-cpu.c"),
        cpu.join("quants.c"),
    ];
    let mut cpp: Vec<PathBuf> = [
        "ggml.cpp",
        "ggml-backend.cpp",
        "ggml-backend-meta.cpp",
        "ggml-backend-reg.cpp",
        "ggml-backend-dl.cpp",
        "ggml-threading.cpp",
    ]
    .iter()
    .map(|f| src.join(f))
    .collect();
    cpp.extend(
        [
            "ggml-cpu.cpp",
            "repack.cpp",
            "hbm.cpp",
            "traits.cpp",
            "binary-ops.cpp",
            "unary-ops.cpp",
            "vec.cpp",
            "ops.cpp",
            "amx/amx.cpp",
            "amx/mmq.cpp",
            "tiled/tiled.cpp",
            "tiled/tiled-kernel.cpp",
            "llamafile/sgemm.cpp",
        ]
        .iter()
        .map(|f| cpu.join(f)),
    );
    if let Some(a) = arch_dir {
        c.push(cpu.join("arch").join(a).join("quants.c"));
        cpp.push(cpu.join("arch").join(a).join("repack.cpp"));
    }
    (c, cpp)
}

fn main() {
    let manifest =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let ggml = manifest.join("vendor/ggml");
    let target = Target::from_env();

    // A Rust-only change must not recompile C: only these inputs re-run this script.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=vendor/ggml");
    println!("cargo:rerun-if-changed=bindgen/wrapper.h");
    println!("cargo:rerun-if-env-changed=GEMLET_CPU");

    let level = env::var("GEMLET_CPU").ok();
    let (isa, level_name) = isa_flags(&target, level.as_deref());

    // cmake writes this with configure_file; ggml.c includes it.
    std::fs::write(
        out.join("ggml-version.h"),
        format!(
            "#pragma once\n#define GGML_VERSION \"{GGML_VERSION}\"\n#define GGML_COMMIT \"{GGML_COMMIT}\"\n"
        ),
    )
    .expect("write ggml-version.h");

    let arch_dir = target.arch_dir();
    let (c_files, cpp_files) = sources(&ggml, arch_dir);

    // The defines ggml's CMakeLists pass for a static, CPU-only build with llama.cpp's options.
    // No GGML_USE_OPENMP: ggml's own thread pool avoids libgomp in static and cross builds.
    let mut defines: Vec<(&str, Option<&str>)> = vec![
        ("NDEBUG", None),
        ("_XOPEN_SOURCE", Some("600")),
        ("GGML_SCHED_MAX_COPIES", Some("4")),
        ("GGML_USE_CPU", None),
        ("GGML_USE_LLAMAFILE", None),
        // Registers the CPU_REPACK buffer type, which repacked weights move to (see
        // src/model/weights.rs: Repack).
        ("GGML_USE_CPU_REPACK", None),
    ];
    if target.os == "linux" || target.os == "android" {
        defines.push(("_GNU_SOURCE", None));
    }
    if arch_dir.is_none() {
        defines.push(("GGML_CPU_GENERIC", None));
    }

    let mut base = cc::Build::new();
    base.include(ggml.join("include"))
        .include(ggml.join("src"))
        .include(ggml.join("src/ggml-cpu"))
        .include(&out)
        // ggml is optimised even in the dev profile: tests run the real kernels.
        .opt_level(3)
        .debug(false)
        .warnings(false)
        .extra_warnings(false)
        .flag("-pthread")
        .flag_if_supported("-Wno-psabi");
    for (k, v) in &defines {
        base.define(k, *v);
    }
    for f in &isa {
        base.flag(f);
    }

    // Two builds (C, C++) into ONE archive: the halves call each other, and a single archive
    // avoids GNU ld archive-order problems.
    let mut c = base.clone();
    c.std("gnu11").files(&c_files);
    let c_objects = c.compile_intermediates();
    let mut cxx = base;
    cxx.cpp(true)
        .std("gnu++17")
        .files(&cpp_files)
        .objects(&c_objects)
        .cpp_link_stdlib("stdc++")
        .cpp_link_stdlib_static(true);
    cxx.compile("ggml");
    // No rustc-link-lib=m/dl/pthread: std links them already, and an explicit dylib=m makes a
    // +crt-static binary need libm.so.6 and crash at start.

    cpu_check(&manifest, &isa, &level_name);

    println!("cargo:rustc-env=GEMLET_GGML_VERSION={GGML_VERSION} ({GGML_COMMIT})");
    println!("cargo:rustc-env=GEMLET_CPU_LEVEL={level_name}");
    println!("cargo:rustc-env=GEMLET_CPU_FLAGS={}", isa.join(" "));

    #[cfg(feature = "bindgen")]
    generate_bindings(&manifest, &ggml, &target);
}

/// The compiler's predefined macros that mark an instruction-set feature, and the cpucheck.c
/// define that makes the startup check look for it.
const FEATURE_MACROS: &[(&str, &str)] = &[
    ("__SSE4_2__", "NEED_SSE42"),
    ("__AVX__", "NEED_AVX"),
    ("__AVX2__", "NEED_AVX2"),
    ("__FMA__", "NEED_FMA"),
    ("__F16C__", "NEED_F16C"),
    ("__AVX512F__", "NEED_AVX512F"),
    ("__AVX512BW__", "NEED_AVX512BW"),
    ("__AVX512VNNI__", "NEED_AVX512VNNI"),
    ("__AVX512BF16__", "NEED_AVX512BF16"),
    ("__AVXVNNI__", "NEED_AVXVNNI"),
    ("__ARM_FEATURE_DOTPROD", "NEED_DOTPROD"),
    ("__ARM_FEATURE_FP16_VECTOR_ARITHMETIC", "NEED_FP16"),
    ("__ARM_FEATURE_SVE", "NEED_SVE"),
    ("__ARM_FEATURE_MATMUL_INT8", "NEED_I8MM"),
];

/// Compiles src/ggml/cpucheck.c, without the ISA flags, checking at startup for every feature
/// those flags let the compiler use (whatever the level: native, explicit or from the target).
fn cpu_check(manifest: &Path, isa: &[String], level_name: &str) {
    println!("cargo:rerun-if-changed=src/ggml/cpucheck.c");
    let mut chk = cc::Build::new();
    chk.file(manifest.join("src/ggml/cpucheck.c"))
        .opt_level(2)
        .warnings(false);
    let compiler = chk.get_compiler();
    let macros = std::process::Command::new(compiler.path())
        .args(compiler.args())
        .args(isa)
        .args(["-dM", "-E", "-x", "c", "/dev/null"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let defined = |m: &str| {
        macros
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(m))
    };
    for (m, need) in FEATURE_MACROS {
        if defined(m) {
            chk.define(need, None);
        }
    }
    // armv7: NEON, and VFPv4 (whose fused multiply-add ggml's NEON paths use).
    if isa.iter().any(|f| f.starts_with("-mfpu=neon")) {
        chk.define("NEED_NEON", None);
        if defined("__ARM_FEATURE_FMA") {
            chk.define("NEED_VFPV4", None);
        }
    }
    chk.define(
        "GEMLET_CPU_NAME",
        Some(format!("\"{level_name}\"").as_str()),
    );
    chk.compile("gemlet_cpucheck");
}

/// The ggml API src/ggml calls (regular expressions); types they need come along.
#[cfg(feature = "bindgen")]
const ALLOWED_FUNCTIONS: &[&str] = &[
    // contexts, tensors, metadata
    "ggml_init",
    "ggml_free",
    "ggml_used_mem",
    "ggml_get_mem_size",
    "ggml_get_no_alloc",
    "ggml_tensor_overhead",
    "ggml_new_tensor",
    "ggml_set_name",
    "ggml_nbytes",
    "ggml_is_contiguous",
    "ggml_type_name",
    "ggml_type_size",
    "ggml_blck_size",
    "ggml_is_quantized",
    "ggml_fp16_to_fp32",
    "ggml_fp32_to_fp16",
    // operations
    "ggml_(add|mul|mul_mat|get_rows|set_rows|rms_norm|scale|tanh|gelu|geglu_split|soft_max_ext|rope_ext)",
    "ggml_(cpy|cont|transpose|permute|reshape_[1-4]d|view_[1-4]d|flash_attn_ext)",
    // mixture of experts
    "ggml_(mul_mat_id|argsort_top_k|soft_max|sum_rows|clamp|div|repeat_4d)",
    // Gemma 3n's AltUp streams, LAuReL and activation sparsity
    "ggml_(sqr|sqrt|sub|relu|mean|concat|scale_bias|cont_3d)",
    // graphs and execution
    "ggml_new_graph_custom",
    "ggml_graph_overhead_custom",
    "ggml_build_forward_expand",
    "ggml_graph_n_nodes",
    "ggml_graph_node",
    "ggml_graph_plan",
    "ggml_graph_compute",
    "ggml_threadpool_(new|free)",
    "ggml_threadpool_params_default",
    "ggml_cpu_init",
    "ggml_log_set",
    "ggml_cpu_has_.*",
    "ggml_set_(input|output)",
    // graph allocation: one reused compute buffer
    "ggml_gallocr_(new|free|alloc_graph|reserve|get_buffer_size)",
    "ggml_backend_cpu_buffer_type",
    // repacked weights: ggml's CPU_REPACK buffer type, found through the registry
    "ggml_backend_cpu_reg",
    "ggml_backend_reg_(get_proc_address|dev_get)",
    "ggml_backend_dev_supports_op",
    "ggml_backend_buft_(alloc_buffer|get_alignment|name)",
    "ggml_backend_buffer_(free|get_base)",
    "ggml_backend_tensor_(alloc|set)",
    // quantization
    "ggml_quantize_(init|chunk|requires_imatrix)",
    "ggml_get_type_traits",
];

/// Regenerates the committed bindings (`cargo build --features bindgen`). The allow-list keeps
/// the file to what src/ggml uses, and no layout tests are emitted, so the one file is valid for
/// 32- and 64-bit targets alike (struct layouts are computed by rustc per target).
#[cfg(feature = "bindgen")]
fn generate_bindings(manifest: &Path, ggml: &Path, target: &Target) {
    let _ = target;
    let bindings = bindgen::Builder::default()
        // One wrapper header: several .header() calls make clang see ggml-backend.h twice.
        .header(manifest.join("bindgen/wrapper.h").to_string_lossy())
        .clang_arg(format!("-I{}", ggml.join("include").display()))
        .allowlist_function(ALLOWED_FUNCTIONS.join("|"))
        .allowlist_var("GGML_(TYPE|STATUS|ROPE_TYPE|PREC|LOG_LEVEL)_.*|GGML_MAX_(DIMS|SRC|NAME|OP_PARAMS)")
        .prepend_enum_name(false)
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .merge_extern_blocks(true)
        .sort_semantically(true)
        .raw_line("// Generated by bindgen from vendor/ggml headers; regenerate with `cargo build --features bindgen`.")
        .generate()
        .expect("bindgen failed on bindgen/wrapper.h");
    let text = bindings.to_string();
    let path = manifest.join("src/ggml/bindings.rs");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text).expect("write src/ggml/bindings.rs");
    }
}
