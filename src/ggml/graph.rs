//! Computation graphs and the executor that runs them on a persistent thread pool.

use super::alloc::Ticket;
use super::{init_cpu, sys, tensor_name, GgmlError, Result, Tensor};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a context keeps for its graphs: the span of addresses its tensors lie in (ggml places
/// them one after the other in the context's arena), and the allocation an allocator gave
/// them, kept in the context so that every handle to a graph of it sees it.
#[derive(Default)]
pub(super) struct Home {
    span: Cell<Option<(usize, usize)>>,
    ticket: RefCell<Option<Ticket>>,
}

impl Home {
    pub(super) fn created(&self, t: NonNull<sys::ggml_tensor>) {
        let a = t.as_ptr() as usize;
        let (lo, hi) = self.span.get().unwrap_or((a, a));
        self.span.set(Some((lo.min(a), hi.max(a))));
    }

    /// Whether `t` is a tensor of this context.
    fn holds(&self, t: *const sys::ggml_tensor) -> bool {
        self.span
            .get()
            .is_some_and(|(lo, hi)| (lo..=hi).contains(&(t as usize)))
    }
}

/// A forward graph in a context's arena. Invariant in `'c`, so that tensors of shorter-lived
/// contexts cannot be added to it.
pub struct Graph<'c> {
    raw: NonNull<sys::ggml_cgraph>,
    home: &'c Home,
    _ctx: PhantomData<Cell<&'c ()>>,
}

impl<'c> Graph<'c> {
    pub(super) fn from_raw(g: *mut sys::ggml_cgraph, home: &'c Home) -> Graph<'c> {
        Graph {
            raw: NonNull::new(g).expect("ggml returned a null graph"),
            home,
            _ctx: PhantomData,
        }
    }

    /// Gives back the memory an earlier allocation placed the graph's tensors in (their data
    /// pointers go back to null, so that the allocator places them again), and lists the
    /// tensors that have no memory now: those an allocation will place. Refuses a tensor of
    /// another context without memory, whose descriptor this graph cannot vouch for.
    pub(super) fn unplace(&self) -> Result<Vec<NonNull<sys::ggml_tensor>>> {
        if let Some(old) = self.home.ticket.borrow_mut().take() {
            for t in old.placed {
                // SAFETY: `t` is a tensor descriptor of this graph's context (checked when it
                // was recorded), alive as long as the context; no compute runs (the graph is
                // borrowed here and computing needs the executor and the context's tensors).
                unsafe {
                    let t = t.as_ptr();
                    (*t).data = std::ptr::null_mut();
                    (*t).buffer = std::ptr::null_mut();
                }
            }
        }
        let mut placed = Vec::new();
        for node in self.nodes() {
            // SAFETY: nodes and their sources are live tensors of this graph.
            let n = unsafe { &*node };
            let srcs = n.src.iter().copied().filter(|s| !s.is_null());
            for t in std::iter::once(node).chain(srcs) {
                // SAFETY: as above.
                if unsafe { (*t).data.is_null() } {
                    if !self.home.holds(t) {
                        return Err(GgmlError::NoData {
                            name: tensor_name(t),
                        });
                    }
                    let t = NonNull::new(t).expect("not null");
                    if !placed.contains(&t) {
                        placed.push(t);
                    }
                }
            }
        }
        Ok(placed)
    }

    /// Records the allocation the graph's tensors now live in.
    pub(super) fn set_ticket(&self, t: Ticket) {
        *self.home.ticket.borrow_mut() = Some(t);
    }

    /// Whether the graph's memory came from an allocation that is no longer its allocator's.
    fn is_stale(&self) -> bool {
        self.home
            .ticket
            .borrow()
            .as_ref()
            .is_some_and(|t| !t.is_current())
    }

    /// Adds `t` and everything it depends on.
    pub fn expand(&mut self, t: Tensor<'c>) {
        // SAFETY: live graph and tensor; ggml asserts the node limit.
        unsafe { sys::ggml_build_forward_expand(self.raw.as_ptr(), t.raw()) }
    }

    pub(super) fn raw(&self) -> *mut sys::ggml_cgraph {
        self.raw.as_ptr()
    }

    /// The names of the graph's nodes, in compute order (to compare a graph with llama.cpp's
    /// node by node).
    pub fn node_names(&self) -> Vec<String> {
        self.nodes().map(|t| tensor_name(t)).collect()
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
        // Checked before any node is looked at: a stale graph's tensors point into freed memory.
        if graph.is_stale() {
            return Err(GgmlError::StaleGraph);
        }
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
                status => Err(GgmlError::Compute {
                    status,
                    nodes: graph.n_nodes(),
                }),
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
