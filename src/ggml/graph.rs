//! Computation graphs and the executor that runs them on a persistent thread pool.

use super::{init_cpu, sys, tensor_name, GgmlError, Result, Tensor};
use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// A forward graph in a context's arena. Invariant in `'c`, so that an [`super::Allocator`]
/// borrowed for the graph's lifetime stays borrowed while its tensors are in use.
pub struct Graph<'c> {
    raw: NonNull<sys::ggml_cgraph>,
    _ctx: PhantomData<Cell<&'c ()>>,
}

impl<'c> Graph<'c> {
    pub(super) fn from_raw(g: *mut sys::ggml_cgraph) -> Graph<'c> {
        Graph {
            raw: NonNull::new(g).expect("ggml returned a null graph"),
            _ctx: PhantomData,
        }
    }

    /// Adds `t` and everything it depends on.
    pub fn expand(&mut self, t: Tensor<'c>) {
        // SAFETY: live graph and tensor; ggml asserts the node limit.
        unsafe { sys::ggml_build_forward_expand(self.raw.as_ptr(), t.raw()) }
    }

    pub(super) fn raw(&self) -> *mut sys::ggml_cgraph {
        self.raw.as_ptr()
    }

    pub fn n_nodes(&self) -> usize {
        // SAFETY: live graph.
        unsafe { sys::ggml_graph_n_nodes(self.raw.as_ptr()) as usize }
    }

    /// The nodes, without collecting them (this runs before every compute).
    fn nodes(&self) -> impl Iterator<Item = *mut sys::ggml_tensor> {
        let raw = self.raw;
        // SAFETY: indices below n_nodes are live nodes.
        (0..self.n_nodes()).map(move |i| unsafe { sys::ggml_graph_node(raw.as_ptr(), i as i32) })
    }

    /// Names a tensor of the graph that has no memory yet, if any: computing it would write
    /// through a null pointer.
    fn unallocated(&self) -> Option<String> {
        for node in self.nodes() {
            // SAFETY: nodes and their sources are live tensors of this graph.
            let n = unsafe { &*node };
            if n.data.is_null() {
                return Some(tensor_name(node));
            }
            for &src in n.src.iter().filter(|s| !s.is_null()) {
                // SAFETY: as above.
                if unsafe { (*src).data.is_null() } {
                    return Some(tensor_name(src));
                }
            }
        }
        None
    }
}

/// Runs graphs on `n_threads` threads kept alive between computes, with a work buffer reused
/// from one compute to the next (no allocation per token once it has grown).
pub struct Executor {
    pool: NonNull<sys::ggml_threadpool>,
    n_threads: usize,
    work: Vec<u8>,
}

// The pool is only driven through &mut self, from one thread at a time.
unsafe impl Send for Executor {}

unsafe extern "C" fn abort_requested(data: *mut std::ffi::c_void) -> bool {
    // SAFETY: `data` is the &AtomicBool passed to compute_abortable, alive for the compute.
    unsafe { (*(data as *const AtomicBool)).load(Ordering::Relaxed) }
}

impl Executor {
    pub fn new(n_threads: usize) -> Result<Executor> {
        init_cpu();
        let n = n_threads.clamp(1, 512);
        // SAFETY: plain parameter struct from ggml's defaults; null return handled.
        let pool = unsafe {
            let mut params = sys::ggml_threadpool_params_default(n as i32);
            sys::ggml_threadpool_new(&mut params)
        };
        let pool = NonNull::new(pool).ok_or(GgmlError::ThreadPool(n))?;
        Ok(Executor {
            pool,
            n_threads: n,
            work: Vec::new(),
        })
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Computes every node of `graph`.
    pub fn compute(&mut self, graph: &Graph<'_>) -> Result<()> {
        self.run(graph, None)
    }

    /// Like [`Executor::compute`], but stops early (with [`GgmlError::Aborted`]) once `stop`
    /// is set, e.g. from a Ctrl-C handler.
    pub fn compute_abortable(&mut self, graph: &Graph<'_>, stop: &AtomicBool) -> Result<()> {
        self.run(graph, Some(stop))
    }

    fn run(&mut self, graph: &Graph<'_>, stop: Option<&AtomicBool>) -> Result<()> {
        if let Some(name) = graph.unallocated() {
            return Err(GgmlError::NoData { name });
        }
        // SAFETY: live graph and pool; the plan's work buffer is ours and sized as ggml asks.
        unsafe {
            let mut plan = sys::ggml_graph_plan(
                graph.raw.as_ptr(),
                self.n_threads as i32,
                self.pool.as_ptr(),
            );
            if self.work.len() < plan.work_size {
                self.work.resize(plan.work_size, 0);
            }
            plan.work_data = self.work.as_mut_ptr();
            if let Some(flag) = stop {
                plan.abort_callback = Some(abort_requested);
                plan.abort_callback_data = flag as *const AtomicBool as *mut std::ffi::c_void;
            }
            match sys::ggml_graph_compute(graph.raw.as_ptr(), &mut plan) {
                sys::GGML_STATUS_SUCCESS => Ok(()),
                sys::GGML_STATUS_ABORTED => Err(GgmlError::Aborted),
                status => Err(GgmlError::Compute(status)),
            }
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // SAFETY: the pool is ours and idle (compute is synchronous).
        unsafe { sys::ggml_threadpool_free(self.pool.as_ptr()) }
    }
}
