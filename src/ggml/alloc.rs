//! One compute buffer for graphs, reused from graph to graph (ggml's graph allocator).

use super::{sys, GgmlError, Graph, Result};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Gives the intermediate tensors of a graph memory in one CPU buffer, reusing memory of
/// tensors no longer needed; the buffer grows to the largest graph and is then reused.
///
/// Allocating a graph may free the buffer an earlier graph's tensors point into, so only the
/// latest graph an allocator allocated may be computed: each allocation takes a new ticket,
/// recorded in the graph's context, and [`super::Executor`] refuses a graph whose ticket is
/// no longer its allocator's current one ([`GgmlError::StaleGraph`]).
pub struct Allocator {
    raw: NonNull<sys::ggml_gallocr>,
    /// The ticket of the latest allocation; 0 once the allocator is dropped.
    current: Arc<AtomicU64>,
}

/// Tickets are unique across allocators, so that one allocator's ticket never matches another's.
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// Which allocation a context's graph got its memory from (see [`Allocator`]), and the
/// tensors it placed.
#[derive(Debug)]
pub(super) struct Ticket {
    current: Arc<AtomicU64>,
    ticket: u64,
    pub(super) placed: Vec<NonNull<sys::ggml_tensor>>,
}

impl Ticket {
    /// Whether the memory this ticket stands for is still the allocator's.
    pub(super) fn is_current(&self) -> bool {
        self.current.load(Ordering::Acquire) == self.ticket
    }
}

// Driven through &mut self only.
unsafe impl Send for Allocator {}

impl Allocator {
    pub fn new() -> Result<Allocator> {
        // SAFETY: the CPU buffer type is a static singleton; null return handled.
        let raw = unsafe { sys::ggml_gallocr_new(sys::ggml_backend_cpu_buffer_type()) };
        Ok(Allocator {
            raw: NonNull::new(raw).ok_or(GgmlError::AllocatorInit)?,
            current: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Allocates every tensor of `graph` that has no memory yet (or memory from an earlier
    /// allocation: a graph can be allocated again). From now on only this graph of the
    /// allocator's may be computed: an earlier one's memory may have been freed.
    pub fn alloc_graph(&mut self, graph: &Graph<'_>) -> Result<()> {
        // Whatever happens below, earlier graphs' memory may be gone.
        let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
        self.current.store(ticket, Ordering::Release);
        let placed = graph.unplace()?;
        let before = self.buffer_size();
        // SAFETY: live allocator and graph; failure (out of memory) is reported by false.
        if !unsafe { sys::ggml_gallocr_alloc_graph(self.raw.as_ptr(), graph.raw()) } {
            return Err(GgmlError::ComputeBuffer {
                nodes: graph.n_nodes(),
                had: before,
            });
        }
        graph.set_ticket(Ticket {
            current: Arc::clone(&self.current),
            ticket,
            placed,
        });
        Ok(())
    }

    /// Bytes of the compute buffer.
    pub fn buffer_size(&self) -> usize {
        // SAFETY: live allocator; buffer 0 is the CPU buffer.
        unsafe { sys::ggml_gallocr_get_buffer_size(self.raw.as_ptr(), 0) }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        self.current.store(0, Ordering::Release);
        // SAFETY: ours; graphs allocated from it can no longer be computed (their tickets are
        // stale now), so nothing reads the freed buffer.
        unsafe { sys::ggml_gallocr_free(self.raw.as_ptr()) }
    }
}
