//! Safe layer over the vendored ggml CPU backend.
//!
//! Every `unsafe` call into ggml lives under this module; the rest of gemlet builds graphs from
//! [`Context`], [`Tensor`] and [`Graph`] and runs them on an [`Executor`].
//!
//! Soundness rules this layer enforces:
//! - a [`Tensor`] cannot outlive its [`Context`], and a context cannot outlive the memory its
//!   tensors borrow (weights in the GGUF memory map);
//! - borrowed memory is read-only to ggml: writes and copies into it are refused;
//! - tensor data is only handed out as copies, so no Rust reference aliases memory ggml writes;
//! - a graph is computed only when every tensor in it has memory, and only while that memory is
//!   still its allocator's: allocating another graph makes the earlier one stale ([`Allocator`]).

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all,
    clippy::pedantic
)]
mod sys {
    include!("bindings.rs");
}

mod alloc;
mod context;
mod graph;
mod quant;
mod repack;
mod types;

pub use alloc::Allocator;
pub use context::{Context, GraphId, RopeMode, Tensor, TensorId};
pub use graph::{Executor, Graph};
pub use quant::{dequantize, quantize};
pub use types::Type;

use std::ffi::CStr;
use std::sync::Once;

/// Errors of the ggml layer. Each names the tensor or parameter involved.
#[derive(Debug, thiserror::Error)]
pub enum GgmlError {
    #[error("ggml context of {bytes} bytes could not be created (out of memory)")]
    ContextInit { bytes: usize },
    #[error("ggml context is full: tensor '{name}' needs {needed} bytes, {free} are free")]
    ContextFull {
        name: String,
        needed: usize,
        free: usize,
    },
    #[error("tensor '{name}': {what}")]
    Shape { name: String, what: String },
    #[error("tensor '{name}': expected {expected} bytes of data, got {got}")]
    DataSize {
        name: String,
        expected: usize,
        got: usize,
    },
    #[error("tensor '{name}' is {found}, expected {expected}")]
    WrongType {
        name: String,
        expected: Type,
        found: Type,
    },
    #[error("tensor '{name}' has no memory (a metadata-only context; allocate or bind it first)")]
    NoData { name: String },
    #[error("tensor '{name}' borrows read-only memory (model weights) and cannot be written")]
    ReadOnly { name: String },
    #[error("tensor '{name}' is not contiguous")]
    NotContiguous { name: String },
    #[error("type {0} cannot be {1} by ggml")]
    Unsupported(Type, &'static str),
    #[error("ggml thread pool for {0} threads could not be created")]
    ThreadPool(usize),
    #[error("a buffer of {bytes} bytes for {what} could not be allocated (out of memory)")]
    BufferAlloc { what: &'static str, bytes: usize },
    #[error("tensor '{name}' could not be placed in its buffer (ggml status {status})")]
    TensorAlloc { name: String, status: i32 },
    #[error("ggml's graph allocator could not be created (out of memory)")]
    AllocatorInit,
    #[error("the compute buffer for a graph of {nodes} nodes could not be allocated (out of memory; it held {had} bytes)")]
    ComputeBuffer { nodes: usize, had: usize },
    #[error("this graph's memory was given to a graph allocated after it: allocate it again before computing it")]
    StaleGraph,
    #[error("ggml graph compute of {nodes} nodes failed with status {status}")]
    Compute { status: i32, nodes: usize },
    #[error("graph compute was aborted")]
    Aborted,
}

pub type Result<T> = std::result::Result<T, GgmlError>;

/// ggml's CPU tables (fp16 conversion, feature detection) must exist before any kernel runs.
fn init_cpu() {
    static ONCE: Once = Once::new();
    // SAFETY: ggml_cpu_init takes no arguments and is idempotent; the log callback is a plain
    // function that lives for the program; Once serialises both.
    ONCE.call_once(|| unsafe {
        sys::ggml_log_set(Some(log), std::ptr::null_mut());
        sys::ggml_cpu_init()
    });
}

/// ggml's own messages: warnings and errors go to stderr; its debug and info lines (one per
/// repacked tensor, for instance) are for ggml's developers, not gemlet's users.
unsafe extern "C" fn log(
    level: sys::ggml_log_level,
    text: *const std::ffi::c_char,
    _: *mut std::ffi::c_void,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    // A CONT line continues the previous message, shown or not.
    static SHOWING: AtomicBool = AtomicBool::new(false);
    let show = match level {
        sys::GGML_LOG_LEVEL_CONT => SHOWING.load(Ordering::Relaxed),
        l => l >= sys::GGML_LOG_LEVEL_WARN,
    };
    SHOWING.store(show, Ordering::Relaxed);
    if show && !text.is_null() {
        // SAFETY: ggml passes a NUL-terminated message, alive for the call.
        eprint!("{}", unsafe { CStr::from_ptr(text) }.to_string_lossy());
    }
}

/// Links the startup CPU check (src/ggml/cpucheck.c) into the program. The check itself runs as
/// a constructor before `main`; a program that calls this has it.
pub fn link_cpu_check() {
    extern "C" {
        static gemlet_cpucheck_anchor: std::ffi::c_int;
    }
    // SAFETY: a plain int defined in cpucheck.c, never written.
    let anchor = unsafe { std::ptr::read_volatile(&raw const gemlet_cpucheck_anchor) };
    debug_assert_eq!(anchor, 1);
}

/// Version of the vendored ggml and the CPU flags it was compiled with, for `--version`.
pub fn build_info() -> String {
    format!(
        "ggml {}, CPU level {} [{}]",
        env!("GEMLET_GGML_VERSION"),
        env!("GEMLET_CPU_LEVEL"),
        env!("GEMLET_CPU_FLAGS")
    )
}

/// Features ggml's CPU backend was compiled to use (compile-time answers: they say what this
/// build assumes, not what the machine has).
pub fn compiled_cpu_features() -> Vec<&'static str> {
    init_cpu();
    // SAFETY: argument-less queries of compile-time constants.
    let probes: [(&str, unsafe extern "C" fn() -> i32); 12] = [
        ("SSE3", sys::ggml_cpu_has_sse3),
        ("SSSE3", sys::ggml_cpu_has_ssse3),
        ("AVX", sys::ggml_cpu_has_avx),
        ("AVX2", sys::ggml_cpu_has_avx2),
        ("F16C", sys::ggml_cpu_has_f16c),
        ("FMA", sys::ggml_cpu_has_fma),
        ("AVX512", sys::ggml_cpu_has_avx512),
        ("AVX_VNNI", sys::ggml_cpu_has_avx_vnni),
        ("NEON", sys::ggml_cpu_has_neon),
        ("ARM_FMA", sys::ggml_cpu_has_arm_fma),
        ("DOTPROD", sys::ggml_cpu_has_dotprod),
        ("FP16_VA", sys::ggml_cpu_has_fp16_va),
    ];
    probes
        .iter()
        .filter(|(_, f)| unsafe { f() } != 0)
        .map(|(n, _)| *n)
        .collect()
}

/// Half-precision to single, as ggml converts it.
pub fn f16_to_f32(h: u16) -> f32 {
    // SAFETY: pure function on a value.
    unsafe { sys::ggml_fp16_to_fp32(h) }
}

/// Single to half precision (round to nearest even), as ggml converts it.
pub fn f32_to_f16(x: f32) -> u16 {
    // SAFETY: pure function on a value.
    unsafe { sys::ggml_fp32_to_fp16(x) }
}

#[cfg(test)]
pub(crate) struct GgmlTypeInfo {
    pub name: String,
    pub block_size: usize,
    pub block_bytes: usize,
    pub quantized: bool,
}

#[cfg(test)]
pub(crate) const TYPE_COUNT: u32 = sys::GGML_TYPE_COUNT;

#[cfg(test)]
pub(crate) fn type_info_from_ggml(t: Type) -> GgmlTypeInfo {
    // SAFETY: `t` is a live ggml type id; ggml returns a static NUL-terminated name.
    unsafe {
        GgmlTypeInfo {
            name: CStr::from_ptr(sys::ggml_type_name(t.id()))
                .to_string_lossy()
                .into_owned(),
            block_size: sys::ggml_blck_size(t.id()) as usize,
            block_bytes: sys::ggml_type_size(t.id()),
            quantized: sys::ggml_is_quantized(t.id()),
        }
    }
}

#[cfg(test)]
pub(crate) fn ggml_block_size_of_id(id: u32) -> i64 {
    // SAFETY: ids below GGML_TYPE_COUNT index ggml's static trait table.
    unsafe { sys::ggml_blck_size(id) }
}

/// A tensor's name as ggml stores it.
fn tensor_name(t: *const sys::ggml_tensor) -> String {
    // SAFETY: `name` is a fixed array inside a live tensor, always NUL-terminated by ggml.
    unsafe {
        CStr::from_ptr((*t).name.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}
