//! Weights repacked for ggml's CPU matrix kernels (llama.cpp's `--repack`).
//!
//! ggml's CPU_REPACK buffer type interleaves the rows of a quantized matrix (8 rows at a time
//! for Q4_0 and Q4_K on AVX2; 4 or 8 on NEON with dotprod or i8mm) so that a matrix product
//! reads blocks in the order its SIMD kernels consume them. Prompt batches gain the most. Which
//! types and shapes qualify depends on the CPU, so ggml is asked, tensor by tensor, the way
//! llama.cpp asks it (`weight_buft_supported`).

use super::{init_cpu, sys, tensor_name, Context, GgmlError, Result, TensorId};
use std::ffi::CStr;
use std::ptr::NonNull;

/// A ggml backend buffer this crate owns.
pub(super) struct Buffer(NonNull<sys::ggml_backend_buffer>);

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: ours, and freed once; the context owning it outlives its tensors' use.
        unsafe { sys::ggml_backend_buffer_free(self.0.as_ptr()) }
    }
}

/// The CPU device and its CPU_REPACK buffer type, when this build and CPU offer one.
fn repack_type() -> Option<(sys::ggml_backend_dev_t, sys::ggml_backend_buffer_type_t)> {
    type GetExtraBufts =
        unsafe extern "C" fn(sys::ggml_backend_dev_t) -> *mut sys::ggml_backend_buffer_type_t;
    init_cpu();
    // SAFETY: the CPU registry and device are static singletons. The proc address, when
    // present, has ggml's `ggml_backend_dev_get_extra_bufts_t` signature and returns a
    // null-terminated static array of buffer types, each with a static NUL-terminated name.
    unsafe {
        let reg = sys::ggml_backend_cpu_reg();
        let dev = sys::ggml_backend_reg_dev_get(reg, 0);
        let f = sys::ggml_backend_reg_get_proc_address(
            reg,
            c"ggml_backend_dev_get_extra_bufts".as_ptr(),
        );
        if f.is_null() || dev.is_null() {
            return None;
        }
        let f = std::mem::transmute::<*mut std::ffi::c_void, GetExtraBufts>(f);
        let mut p = f(dev);
        while !p.is_null() && !(*p).is_null() {
            if CStr::from_ptr(sys::ggml_backend_buft_name(*p)).to_bytes() == b"CPU_REPACK" {
                return Some((dev, *p));
            }
            p = p.add(1);
        }
    }
    None
}

/// Whether the CPU device would run `w · x` (x a batch of f32 columns) with `w` repacked.
/// The product is described in `scratch` (metadata only, never computed); `dummy` is a
/// zero-sized buffer of the repack type, which `w` points at only for the query.
fn supported(
    dev: sys::ggml_backend_dev_t,
    scratch: &Context<'_>,
    dummy: &Buffer,
    w: *mut sys::ggml_tensor,
) -> bool {
    // SAFETY: `w` is a live tensor of the caller's context whose buffer is null (its data is
    // borrowed); it is set to the dummy buffer for the query and restored, as llama.cpp does.
    unsafe {
        if !(*w).buffer.is_null() || !sys::ggml_is_quantized((*w).type_) {
            return false;
        }
        // Expert matrices (one per expert along dim 2) are the first operand of mul_mat_id.
        let op = if (*w).ne[2] > 1 {
            let used = (*w).ne[2].min(2);
            let ne = [(*w).ne[0], used, 512];
            let x = sys::ggml_new_tensor(scratch.raw(), sys::GGML_TYPE_F32, 3, ne.as_ptr());
            let ne_ids = [used, 512];
            let ids = sys::ggml_new_tensor(scratch.raw(), sys::GGML_TYPE_I32, 2, ne_ids.as_ptr());
            sys::ggml_mul_mat_id(scratch.raw(), w, x, ids)
        } else {
            let ne = [(*w).ne[0], 512];
            let x = sys::ggml_new_tensor(scratch.raw(), sys::GGML_TYPE_F32, 2, ne.as_ptr());
            sys::ggml_mul_mat(scratch.raw(), w, x)
        };
        (*w).buffer = dummy.0.as_ptr();
        let ok = sys::ggml_backend_dev_supports_op(dev, op);
        (*w).buffer = std::ptr::null_mut();
        ok
    }
}

/// The query's fixed parts: the device, its repack buffer type, a scratch context for the
/// products described and a zero-sized buffer of the repack type.
struct Query {
    dev: sys::ggml_backend_dev_t,
    buft: sys::ggml_backend_buffer_type_t,
    scratch: Context<'static>,
    dummy: Buffer,
}

impl Query {
    /// `None` when this build or CPU has no repack buffer type.
    fn new(n: usize) -> Result<Option<Query>> {
        let Some((dev, buft)) = repack_type() else {
            return Ok(None);
        };
        // At most three descriptors a query.
        let scratch = Context::metadata_only(3 * n.max(1), 0)?;
        // SAFETY: a zero-sized allocation of a static buffer type; null is handled.
        let dummy = unsafe { sys::ggml_backend_buft_alloc_buffer(buft, 0) };
        Ok(NonNull::new(dummy).map(|d| Query {
            dev,
            buft,
            scratch,
            dummy: Buffer(d),
        }))
    }
}

impl Context<'_> {
    fn filter_repackable(&self, q: &Query, ids: &[TensorId]) -> Vec<TensorId> {
        let mut out = Vec::new();
        for &id in ids {
            if !out.contains(&id) && supported(q.dev, &q.scratch, &q.dummy, self.resolve(id).raw())
            {
                out.push(id);
            }
        }
        out
    }

    /// Moves each of `ids` that ggml can repack on this CPU into one buffer this context owns,
    /// in the interleaved layout; returns the ones moved. Their former bytes no longer back
    /// them: `moved_one` is told right after each, so the caller can release those pages
    /// before the next copy (peak memory grows by one matrix, not by all of them).
    ///
    /// Only for matrices used as the first operand of `mul_mat` (or, 3-D, of `mul_mat_id`) and
    /// nothing else: any
    /// other op (`get_rows`), or reading the data back, would see the interleaved layout.
    pub fn repack(
        &self,
        ids: &[TensorId],
        mut moved_one: impl FnMut(TensorId),
    ) -> Result<Vec<TensorId>> {
        let Some(q) = Query::new(ids.len())? else {
            return Ok(Vec::new());
        };
        let moved = self.filter_repackable(&q, ids);
        if moved.is_empty() {
            return Ok(moved);
        }
        let buft = q.buft;
        // SAFETY: static buffer type; nbytes of live tensors.
        let align = unsafe { sys::ggml_backend_buft_get_alignment(buft) }.max(1);
        let nbytes = |id: TensorId| unsafe { sys::ggml_nbytes(self.resolve(id).raw()) };
        let size: usize = moved
            .iter()
            .map(|&id| nbytes(id).next_multiple_of(align))
            .sum();
        // SAFETY: a plain allocation; null (out of memory) is handled.
        let raw = unsafe { sys::ggml_backend_buft_alloc_buffer(buft, size) };
        let buffer = NonNull::new(raw).ok_or(GgmlError::BufferAlloc {
            what: "repacked weights",
            bytes: size,
        })?;
        // Owned by the context before any tensor points into it, even if a later one fails.
        self.own_buffer(Buffer(buffer));
        // SAFETY: a non-empty CPU buffer has a base, aligned to `align`.
        let base = unsafe { sys::ggml_backend_buffer_get_base(buffer.as_ptr()) }.cast::<u8>();
        let mut offset = 0;
        for &id in &moved {
            let t = self.resolve(id).raw();
            let n = nbytes(id);
            // SAFETY: `base + offset .. + n` lies inside the buffer (sized above). Allocation
            // asks for a null data pointer; the borrowed bytes, alive for the context, are read
            // once by the repacking `set`. The tensor then points into the buffer for good.
            unsafe {
                let src = (*t).data;
                (*t).data = std::ptr::null_mut();
                let status =
                    sys::ggml_backend_tensor_alloc(buffer.as_ptr(), t, base.add(offset).cast());
                if status != sys::GGML_STATUS_SUCCESS {
                    (*t).data = src;
                    (*t).buffer = std::ptr::null_mut();
                    return Err(GgmlError::TensorAlloc {
                        name: tensor_name(t),
                        status,
                    });
                }
                sys::ggml_backend_tensor_set(t, src, 0, n);
            }
            offset += n.next_multiple_of(align);
            moved_one(id);
        }
        Ok(moved)
    }
}
