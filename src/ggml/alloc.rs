//! One compute buffer for graphs, reused from graph to graph (ggml's graph allocator).

use super::{sys, GgmlError, Graph, Result};
use std::ptr::NonNull;

/// Gives the intermediate tensors of a graph memory in one CPU buffer, reusing memory of
/// tensors no longer needed; the buffer grows to the largest graph and is then reused.
pub struct Allocator {
    raw: NonNull<sys::ggml_gallocr>,
}

// Driven through &mut self only.
unsafe impl Send for Allocator {}

impl Allocator {
    pub fn new() -> Result<Allocator> {
        // SAFETY: the CPU buffer type is a static singleton; null return handled.
        let raw = unsafe { sys::ggml_gallocr_new(sys::ggml_backend_cpu_buffer_type()) };
        Ok(Allocator {
            raw: NonNull::new(raw).ok_or(GgmlError::ContextInit { bytes: 0 })?,
        })
    }

    /// Allocates every tensor of `graph` that has no memory yet. The allocator stays borrowed
    /// as long as the graph's tensors live: their memory is this allocator's buffer, which the
    /// next graph reuses.
    pub fn alloc_graph<'c>(&'c mut self, graph: &Graph<'c>) -> Result<()> {
        // SAFETY: live allocator and graph; failure (out of memory) is reported by false.
        if unsafe { sys::ggml_gallocr_alloc_graph(self.raw.as_ptr(), graph.raw()) } {
            Ok(())
        } else {
            Err(GgmlError::ContextFull {
                name: "compute buffer".into(),
                needed: 0,
                free: 0,
            })
        }
    }

    /// Bytes of the compute buffer.
    pub fn buffer_size(&self) -> usize {
        // SAFETY: live allocator; buffer 0 is the CPU buffer.
        unsafe { sys::ggml_gallocr_get_buffer_size(self.raw.as_ptr(), 0) }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        // SAFETY: ours; no tensor of an allocated graph outlives the borrow in alloc_graph.
        unsafe { sys::ggml_gallocr_free(self.raw.as_ptr()) }
    }
}
