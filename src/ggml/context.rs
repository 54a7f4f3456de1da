//! Owned ggml contexts, tensors, and the operations the Gemma graphs are built from.

use super::{init_cpu, sys, tensor_name, GgmlError, Result, Type};
use std::cell::{Cell, RefCell};
use std::ffi::CString;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Mutex;

/// Address ranges of memory tensors borrow from Rust (the model's memory map). ggml must never
/// write there: a write would be a segfault on a read-only map, or would change `&[u8]` data.
static READ_ONLY: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

fn overlaps_read_only(start: usize, len: usize) -> bool {
    let ranges = READ_ONLY.lock().unwrap_or_else(|e| e.into_inner());
    ranges
        .iter()
        .any(|&(s, l)| start < s.saturating_add(l) && s < start.saturating_add(len))
}

/// A ggml context: an arena holding tensor descriptors and, unless it is metadata-only, their
/// data. `'d` is the lifetime of memory its tensors may borrow (see [`Context::tensor_from_bytes`]).
pub struct Context<'d> {
    raw: NonNull<sys::ggml_context>,
    uid: u64,
    borrowed: RefCell<Vec<(usize, usize)>>,
    /// The arena, when Rust owns it ([`Context::new_zeroed`]); dropped after ggml_free.
    _arena: Option<Vec<u128>>,
    /// Backend buffers tensors were moved into ([`Context::repack`]).
    buffers: RefCell<Vec<super::repack::Buffer>>,
    /// What graphs of this context need to know of it (see [`super::Allocator`]).
    home: super::graph::Home,
    // Invariant in 'd: a covariant marker would let `&Context<'long>` shrink to a shorter 'd
    // and accept data that dies before the context does.
    _data: PhantomData<Cell<&'d [u8]>>,
}

/// Distinguishes contexts, so a [`TensorId`] is only resolved by the context it came from.
static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A handle to a tensor that can be stored beside its context (a struct cannot hold both a
/// context and `Tensor`s borrowing it); [`Context::resolve`] turns it back into a [`Tensor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorId {
    raw: NonNull<sys::ggml_tensor>,
    ctx: u64,
}

/// A handle to a graph, stored beside its context like a [`TensorId`]; [`Context::resolve_graph`]
/// turns it back into a [`super::Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphId {
    raw: NonNull<sys::ggml_cgraph>,
    ctx: u64,
}

/// A tensor inside a [`Context`]. Cheap to copy; valid as long as the context lives.
#[derive(Clone, Copy)]
pub struct Tensor<'c> {
    raw: NonNull<sys::ggml_tensor>,
    _ctx: PhantomData<&'c ()>,
}

/// Rotary embedding layouts (ggml's `GGML_ROPE_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeMode {
    /// Rotate adjacent pairs (x0, x1), (x2, x3), ... (original LLaMA).
    Normal,
    /// Rotate the halves (x_i, x_{i+d/2}) (GPT-NeoX; Gemma uses this).
    Neox,
}

impl<'d> Context<'d> {
    /// A context whose tensors get their data from its own arena of `mem_bytes` bytes.
    pub fn new(mem_bytes: usize) -> Result<Context<'d>> {
        Self::init(mem_bytes, false, None)
    }

    /// Like [`Context::new`], with an arena that reads as zeros. It comes from the allocator's
    /// zeroed pages (calloc maps fresh ones for large sizes), so memory that is never written,
    /// like the unused end of a KV cache, costs no resident memory.
    pub fn new_zeroed(mem_bytes: usize) -> Result<Context<'d>> {
        // u128: the arena must be aligned to GGML_MEM_ALIGN (16 bytes at most).
        let arena = vec![0u128; mem_bytes.div_ceil(16)];
        Self::init(arena.len() * 16, false, Some(arena))
    }

    /// A context for `n_tensors` tensor descriptors and a graph of up to `graph_nodes` nodes,
    /// with no data: tensors get memory by [`Context::tensor_from_bytes`] or an allocator.
    pub fn metadata_only(n_tensors: usize, graph_nodes: usize) -> Result<Context<'d>> {
        let bytes = n_tensors
            .saturating_mul(Self::tensor_overhead())
            .saturating_add(Self::graph_overhead(graph_nodes));
        Self::init(bytes, true, None)
    }

    /// Bytes of context arena one tensor descriptor takes.
    pub fn tensor_overhead() -> usize {
        // SAFETY: pure query.
        unsafe { sys::ggml_tensor_overhead() }
    }

    /// Bytes of context arena a graph of `nodes` nodes takes.
    pub fn graph_overhead(nodes: usize) -> usize {
        // SAFETY: pure query.
        unsafe { sys::ggml_graph_overhead_custom(nodes, false) }
    }

    fn init(mem_bytes: usize, no_alloc: bool, mut arena: Option<Vec<u128>>) -> Result<Context<'d>> {
        init_cpu();
        let params = sys::ggml_init_params {
            mem_size: mem_bytes,
            mem_buffer: arena
                .as_mut()
                .map_or(std::ptr::null_mut(), |a| a.as_mut_ptr().cast()),
            no_alloc,
        };
        // SAFETY: ggml allocates and owns the arena unless we pass one (then it lives in the
        // context, mem_bytes long, until after ggml_free); a null return is handled.
        let raw = unsafe { sys::ggml_init(params) };
        let raw = NonNull::new(raw).ok_or(GgmlError::ContextInit { bytes: mem_bytes })?;
        Ok(Context {
            raw,
            uid: NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            borrowed: RefCell::new(Vec::new()),
            _arena: arena,
            buffers: RefCell::new(Vec::new()),
            home: super::graph::Home::default(),
            _data: PhantomData,
        })
    }

    pub(super) fn raw(&self) -> *mut sys::ggml_context {
        self.raw.as_ptr()
    }

    /// Keeps `b` alive as long as the context: its tensors point into it.
    pub(super) fn own_buffer(&self, b: super::repack::Buffer) {
        self.buffers.borrow_mut().push(b);
    }

    fn no_alloc(&self) -> bool {
        // SAFETY: live context.
        unsafe { sys::ggml_get_no_alloc(self.raw()) }
    }

    /// Bytes of the arena still free.
    pub fn free_bytes(&self) -> usize {
        // SAFETY: live context.
        unsafe { sys::ggml_get_mem_size(self.raw()) - sys::ggml_used_mem(self.raw()) }
    }

    /// A handle to `t`, a tensor created by this context.
    pub fn id_of(&self, t: Tensor<'_>) -> TensorId {
        TensorId {
            raw: t.raw,
            ctx: self.uid,
        }
    }

    /// The tensor behind `id`. Panics if `id` came from another context (a programming error).
    pub fn resolve(&self, id: TensorId) -> Tensor<'_> {
        assert_eq!(id.ctx, self.uid, "tensor handle used with another context");
        Tensor {
            raw: id.raw,
            _ctx: PhantomData,
        }
    }

    /// Every tensor this context creates passes here.
    fn wrap(&self, t: *mut sys::ggml_tensor) -> Tensor<'_> {
        let raw = NonNull::new(t).expect("ggml returned a null tensor");
        self.home.created(raw);
        Tensor {
            raw,
            _ctx: PhantomData,
        }
    }

    /// A new tensor of `ty` with `shape` (ggml order: `shape[0]` is the row length).
    pub fn new_tensor(&self, ty: Type, shape: &[usize], name: &str) -> Result<Tensor<'_>> {
        let ne = check_shape(ty, shape, name)?;
        let data = if self.no_alloc() {
            0
        } else {
            row_major_bytes(ty, &ne).ok_or_else(|| GgmlError::Shape {
                name: name.into(),
                what: "size overflows".into(),
            })?
        };
        // ggml pads every object to its memory alignment (16 bytes).
        let needed = Self::tensor_overhead().saturating_add(data.saturating_add(16));
        if needed > self.free_bytes() {
            return Err(GgmlError::ContextFull {
                name: name.into(),
                needed,
                free: self.free_bytes(),
            });
        }
        // SAFETY: shape validated (1..=4 dims, whole blocks), room checked above.
        let t =
            unsafe { sys::ggml_new_tensor(self.raw(), ty.id(), shape.len() as i32, ne.as_ptr()) };
        let t = self.wrap(t);
        t.set_name(name);
        Ok(t)
    }

    /// A tensor whose data is `bytes`, borrowed (never copied) for the context's lifetime `'d`.
    /// The memory is registered read-only: ggml ops read it, nothing may write it.
    /// Needs a metadata-only context.
    pub fn tensor_from_bytes(
        &self,
        ty: Type,
        shape: &[usize],
        name: &str,
        bytes: &'d [u8],
    ) -> Result<Tensor<'_>> {
        if !self.no_alloc() {
            return Err(GgmlError::Shape {
                name: name.into(),
                what: "borrowed data needs a metadata-only context".into(),
            });
        }
        let ne = check_shape(ty, shape, name)?;
        let expected = row_major_bytes(ty, &ne).unwrap_or(usize::MAX);
        if bytes.len() != expected {
            return Err(GgmlError::DataSize {
                name: name.into(),
                expected,
                got: bytes.len(),
            });
        }
        let range = (bytes.as_ptr() as usize, bytes.len());
        READ_ONLY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(range);
        self.borrowed.borrow_mut().push(range);
        let t = self.new_tensor(ty, shape, name)?;
        // SAFETY: ggml only reads a tensor's data when it is an op input; the bytes outlive the
        // context ('d), have the exact size ggml computes, and writes to them are refused.
        unsafe { (*t.raw.as_ptr()).data = bytes.as_ptr() as *mut std::ffi::c_void };
        Ok(t)
    }

    /// A handle to `g`, a graph of this context, to keep beside the context (as [`TensorId`]).
    pub fn graph_id(&self, g: &super::Graph<'_>) -> GraphId {
        GraphId {
            raw: NonNull::new(g.raw()).expect("graphs are never null"),
            ctx: self.uid,
        }
    }

    /// The graph behind `id`. Panics if `id` came from another context (a programming error).
    pub fn resolve_graph(&self, id: GraphId) -> super::Graph<'_> {
        assert_eq!(id.ctx, self.uid, "graph handle used with another context");
        super::Graph::from_raw(id.raw.as_ptr(), &self.home)
    }

    /// A graph of up to `max_nodes` nodes, living in this context's arena.
    pub fn new_graph(&self, max_nodes: usize) -> Result<super::Graph<'_>> {
        let needed = Self::graph_overhead(max_nodes);
        if needed > self.free_bytes() {
            return Err(GgmlError::ContextFull {
                name: "graph".into(),
                needed,
                free: self.free_bytes(),
            });
        }
        // SAFETY: room checked; the graph lives in the arena as long as the context.
        let g = unsafe { sys::ggml_new_graph_custom(self.raw(), max_nodes, false) };
        Ok(super::Graph::from_raw(g, &self.home))
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        let borrowed = self.borrowed.get_mut();
        if !borrowed.is_empty() {
            let mut ranges = READ_ONLY.lock().unwrap_or_else(|e| e.into_inner());
            for r in borrowed.iter() {
                if let Some(i) = ranges.iter().position(|x| x == r) {
                    ranges.swap_remove(i);
                }
            }
        }
        // SAFETY: the context is live and no Tensor can outlive it (lifetimes).
        unsafe { sys::ggml_free(self.raw()) }
    }
}

fn check_shape(ty: Type, shape: &[usize], name: &str) -> Result<[i64; 4]> {
    let bad = |what: String| GgmlError::Shape {
        name: name.into(),
        what,
    };
    if shape.is_empty() || shape.len() > 4 {
        return Err(bad(format!(
            "{} dimensions, ggml takes 1 to 4",
            shape.len()
        )));
    }
    let mut ne = [1i64; 4];
    let mut total: i64 = 1;
    for (i, &d) in shape.iter().enumerate() {
        let d = i64::try_from(d).map_err(|_| bad(format!("dimension {i} is {d}")))?;
        ne[i] = d;
        total = total
            .checked_mul(d)
            .ok_or_else(|| bad(format!("{shape:?} has more elements than fit in 64 bits")))?;
    }
    if shape[0] % ty.block_size() != 0 {
        return Err(bad(format!(
            "row length {} is not a multiple of {}'s block size {}",
            shape[0],
            ty,
            ty.block_size()
        )));
    }
    Ok(ne)
}

fn row_major_bytes(ty: Type, ne: &[i64; 4]) -> Option<usize> {
    let row = ty.row_bytes(ne[0] as u64)?;
    let rows = (ne[1] as u64)
        .checked_mul(ne[2] as u64)?
        .checked_mul(ne[3] as u64)?;
    usize::try_from(row.checked_mul(rows)?).ok()
}

impl<'c> Tensor<'c> {
    pub(super) fn raw(self) -> *mut sys::ggml_tensor {
        self.raw.as_ptr()
    }

    fn get(&self) -> &sys::ggml_tensor {
        // SAFETY: the tensor lives as long as 'c, and only ggml writes its fields, never while
        // Rust holds this short borrow (compute happens under &mut Executor, not during reads).
        unsafe { self.raw.as_ref() }
    }

    pub fn name(self) -> String {
        tensor_name(self.raw())
    }

    /// Sets the tensor's name (ggml keeps up to 63 bytes).
    pub fn set_name(self, name: &str) -> Self {
        let c = CString::new(name.replace('\0', "")).expect("NULs removed");
        // SAFETY: ggml copies at most GGML_MAX_NAME-1 bytes and NUL-terminates.
        unsafe { sys::ggml_set_name(self.raw(), c.as_ptr()) };
        self
    }

    pub fn ty(self) -> Type {
        Type::from_id(self.get().type_).expect("ggml tensors always have a live type")
    }

    /// Elements along each of the 4 dimensions (ggml's `ne`).
    pub fn shape(self) -> [usize; 4] {
        self.get().ne.map(|d| d as usize)
    }

    /// Stride in bytes along each dimension (ggml's `nb`).
    pub fn strides(self) -> [usize; 4] {
        self.get().nb
    }

    pub fn n_elements(self) -> usize {
        self.shape().iter().product()
    }

    pub fn n_bytes(self) -> usize {
        // SAFETY: live tensor.
        unsafe { sys::ggml_nbytes(self.raw()) }
    }

    /// Marks the tensor as a graph input: the allocator gives it memory of its own that no
    /// intermediate result reuses, so it can be written before compute.
    pub fn set_input(self) -> Self {
        // SAFETY: sets a flag on a live tensor.
        unsafe { sys::ggml_set_input(self.raw()) };
        self
    }

    /// Marks the tensor as a graph output, so its memory is not reused by later nodes.
    pub fn set_output(self) -> Self {
        // SAFETY: sets a flag on a live tensor.
        unsafe { sys::ggml_set_output(self.raw()) };
        self
    }

    pub fn is_contiguous(self) -> bool {
        // SAFETY: live tensor.
        unsafe { sys::ggml_is_contiguous(self.raw()) }
    }

    fn has_data(self) -> bool {
        !self.get().data.is_null()
    }

    fn data_for_read(self) -> Result<*const u8> {
        if !self.has_data() {
            return Err(GgmlError::NoData { name: self.name() });
        }
        if !self.is_contiguous() {
            return Err(GgmlError::NotContiguous { name: self.name() });
        }
        Ok(self.get().data as *const u8)
    }

    fn data_for_write(self, len: usize) -> Result<*mut u8> {
        let p = self.data_for_read()? as *mut u8;
        if len != self.n_bytes() {
            return Err(GgmlError::DataSize {
                name: self.name(),
                expected: self.n_bytes(),
                got: len,
            });
        }
        if overlaps_read_only(p as usize, len) {
            return Err(GgmlError::ReadOnly { name: self.name() });
        }
        Ok(p)
    }

    /// Copies `bytes` into the tensor (exactly `n_bytes()` of them).
    pub fn write_bytes(self, bytes: &[u8]) -> Result<()> {
        let p = self.data_for_write(bytes.len())?;
        // SAFETY: p is valid for n_bytes() == bytes.len() writable bytes not borrowed by Rust.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    fn expect_type(self, expected: Type) -> Result<()> {
        if self.ty() != expected {
            return Err(GgmlError::WrongType {
                name: self.name(),
                expected,
                found: self.ty(),
            });
        }
        Ok(())
    }

    /// Copies `values` into the tensor's memory, byte for byte (no intermediate buffer: inputs
    /// are written every token).
    fn write_values<T: Copy>(self, values: &[T]) -> Result<()> {
        let len = std::mem::size_of_val(values);
        let p = self.data_for_write(len)?;
        // SAFETY: p is valid for n_bytes() == len writable bytes not borrowed by Rust; T is a
        // plain number type (the callers below), so its bytes are its value.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr().cast::<u8>(), p, len) };
        Ok(())
    }

    /// Copies `values` into an F32 tensor.
    pub fn write_f32(self, values: &[f32]) -> Result<()> {
        self.expect_type(Type::F32)?;
        self.write_values(values)
    }

    /// Copies `values` into an I32 tensor (positions, row indices).
    pub fn write_i32(self, values: &[i32]) -> Result<()> {
        self.expect_type(Type::I32)?;
        self.write_values(values)
    }

    /// Copies half-precision bit patterns into an F16 tensor, e.g. an attention mask.
    pub fn write_f16(self, values: &[u16]) -> Result<()> {
        self.expect_type(Type::F16)?;
        self.write_values(values)
    }

    /// Copies `values` (as f16) into an F16 tensor.
    pub fn write_f32_as_f16(self, values: &[f32]) -> Result<()> {
        let bits: Vec<u16> = values.iter().map(|&v| super::f32_to_f16(v)).collect();
        self.write_f16(&bits)
    }

    /// A copy of the tensor's raw bytes.
    pub fn read_bytes(self) -> Result<Vec<u8>> {
        let p = self.data_for_read()?;
        // SAFETY: p is valid for n_bytes() bytes; no compute runs while we copy.
        Ok(unsafe { std::slice::from_raw_parts(p, self.n_bytes()) }.to_vec())
    }

    /// Appends the values of an F32 tensor to `out`: one copy, and no allocation once `out`
    /// has the capacity (logits are read every token).
    pub fn read_f32_into(self, out: &mut Vec<f32>) -> Result<()> {
        self.expect_type(Type::F32)?;
        let p = self.data_for_read()?;
        let n = self.n_elements();
        out.reserve(n);
        // SAFETY: p is valid for n_bytes() == 4n bytes; `out` has room for n more values, which
        // the copy initialises before the length grows.
        unsafe {
            let dst = out.as_mut_ptr().add(out.len());
            std::ptr::copy_nonoverlapping(p, dst.cast::<u8>(), 4 * n);
            out.set_len(out.len() + n);
        }
        Ok(())
    }

    /// The tensor's values as f32, converting from any type ggml can dequantize.
    pub fn read_f32(self) -> Result<Vec<f32>> {
        if self.ty() == Type::F32 {
            let mut out = Vec::new();
            self.read_f32_into(&mut out)?;
            return Ok(out);
        }
        let bytes = self.read_bytes()?;
        match self.ty() {
            Type::I32 => Ok(bytes
                .chunks_exact(4)
                .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect()),
            ty => super::dequantize(ty, &bytes, self.n_elements()),
        }
    }
}

/// Graph operations. Each returns a new tensor in this context; inputs may come from any context
/// that outlives it (weights live in their own). Shape rules are ggml's, checked by ggml itself:
/// a mismatch is a programming error and aborts with ggml's message.
impl Context<'_> {
    /// `a` (k × n) times `b` (k × m) → (n × m): ggml's `mul_mat`, i.e. `b · aᵀ` per row.
    pub fn mul_mat<'c>(&'c self, a: Tensor<'c>, b: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: live tensors; ggml asserts shapes.
        self.wrap(unsafe { sys::ggml_mul_mat(self.raw(), a.raw(), b.raw()) })
    }

    /// Mixture-of-experts product: for each token t and slot i, expert `ids[i, t]` of `experts`
    /// (k × n × n_expert) times row (i or 0, t) of `b` (k × 1-or-n_used × tokens) → (n × n_used
    /// × tokens).
    pub fn mul_mat_id<'c>(
        &'c self,
        experts: Tensor<'c>,
        b: Tensor<'c>,
        ids: Tensor<'c>,
    ) -> Tensor<'c> {
        // SAFETY: live tensors; ggml asserts shapes and the I32 ids (their values are the
        // graph's own top-k, below n_expert).
        self.wrap(unsafe { sys::ggml_mul_mat_id(self.raw(), experts.raw(), b.raw(), ids.raw()) })
    }

    /// The indices (I32) of the `k` largest entries of each row, largest first.
    pub fn argsort_top_k<'c>(&'c self, a: Tensor<'c>, k: usize) -> Tensor<'c> {
        // SAFETY: as above; ggml asserts k <= the row length.
        self.wrap(unsafe { sys::ggml_argsort_top_k(self.raw(), a.raw(), k as i32) })
    }

    /// softmax along rows.
    pub fn soft_max<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_soft_max(self.raw(), a.raw()) })
    }

    /// The sum of each row (a tensor of rows of length 1).
    pub fn sum_rows<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_sum_rows(self.raw(), a.raw()) })
    }

    /// Each element clamped into [min, max].
    pub fn clamp<'c>(&'c self, a: Tensor<'c>, min: f32, max: f32) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_clamp(self.raw(), a.raw(), min, max) })
    }

    /// Element-wise quotient; `b` broadcasts along any dimension where it is 1.
    pub fn div<'c>(&'c self, a: Tensor<'c>, b: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_div(self.raw(), a.raw(), b.raw()) })
    }

    /// a - b, b broadcast over a's shape.
    pub fn sub<'c>(&'c self, a: Tensor<'c>, b: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_sub(self.raw(), a.raw(), b.raw()) })
    }

    /// Each element squared.
    pub fn sqr<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_sqr(self.raw(), a.raw()) })
    }

    /// Each element's square root.
    pub fn sqrt<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_sqrt(self.raw(), a.raw()) })
    }

    /// max(a, 0).
    pub fn relu<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_relu(self.raw(), a.raw()) })
    }

    /// The mean of each row.
    pub fn mean<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_mean(self.raw(), a.raw()) })
    }

    /// a · s + b.
    pub fn scale_bias<'c>(&'c self, a: Tensor<'c>, s: f32, b: f32) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_scale_bias(self.raw(), a.raw(), s, b) })
    }

    /// `a` and `b` joined along dimension `dim` (the other dimensions equal; ggml asserts it).
    pub fn concat<'c>(&'c self, a: Tensor<'c>, b: Tensor<'c>, dim: usize) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_concat(self.raw(), a.raw(), b.raw(), dim as i32) })
    }

    /// `a` made contiguous with the 3-D shape `shape` (as many elements).
    pub fn cont_3d<'c>(&'c self, a: Tensor<'c>, shape: [usize; 3]) -> Tensor<'c> {
        let [x, y, z] = shape.map(|v| v as i64);
        // SAFETY: as above; ggml asserts the element count.
        self.wrap(unsafe { sys::ggml_cont_3d(self.raw(), a.raw(), x, y, z) })
    }

    /// `a` tiled to `shape` (each dimension a multiple of a's).
    pub fn repeat<'c>(&'c self, a: Tensor<'c>, shape: [usize; 4]) -> Tensor<'c> {
        let [x, y, z, w] = shape.map(|v| v as i64);
        // SAFETY: as above; ggml asserts that the shape is a multiple.
        self.wrap(unsafe { sys::ggml_repeat_4d(self.raw(), a.raw(), x, y, z, w) })
    }

    /// Rows `ids` (I32) of `a`, dequantized to F32.
    pub fn get_rows<'c>(&'c self, a: Tensor<'c>, ids: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_get_rows(self.raw(), a.raw(), ids.raw()) })
    }

    /// x / sqrt(mean(x²) + eps) along rows.
    pub fn rms_norm<'c>(&'c self, a: Tensor<'c>, eps: f32) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_rms_norm(self.raw(), a.raw(), eps) })
    }

    /// Element-wise product; `b` broadcasts along any dimension where it is 1.
    pub fn mul<'c>(&'c self, a: Tensor<'c>, b: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_mul(self.raw(), a.raw(), b.raw()) })
    }

    /// Element-wise sum; `b` broadcasts along any dimension where it is 1.
    pub fn add<'c>(&'c self, a: Tensor<'c>, b: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_add(self.raw(), a.raw(), b.raw()) })
    }

    pub fn scale<'c>(&'c self, a: Tensor<'c>, s: f32) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_scale(self.raw(), a.raw(), s) })
    }

    pub fn tanh<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_tanh(self.raw(), a.raw()) })
    }

    /// GELU, tanh approximation (Gemma's `gelu_pytorch_tanh`).
    pub fn gelu<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_gelu(self.raw(), a.raw()) })
    }

    /// softmax(a * scale + mask) along rows; the mask (F16 or F32, rows padded as ggml requires)
    /// broadcasts over heads.
    pub fn soft_max_ext<'c>(
        &'c self,
        a: Tensor<'c>,
        mask: Option<Tensor<'c>>,
        scale: f32,
    ) -> Tensor<'c> {
        let m = mask.map_or(std::ptr::null_mut(), |m| m.raw());
        // SAFETY: as above; a null mask is allowed.
        self.wrap(unsafe { sys::ggml_soft_max_ext(self.raw(), a.raw(), m, scale, 0.0) })
    }

    /// Rotary position embedding of the first `n_dims` of each head of `a` (head_dim × heads ×
    /// tokens) at positions `pos` (I32, one per token), frequencies `base^(-2i/n_dims)`, each
    /// divided by its entry of `freq_factors` (F32, n_dims / 2) when given.
    #[allow(clippy::too_many_arguments)]
    pub fn rope<'c>(
        &'c self,
        a: Tensor<'c>,
        pos: Tensor<'c>,
        n_dims: usize,
        mode: RopeMode,
        freq_base: f32,
        freq_scale: f32,
        freq_factors: Option<Tensor<'c>>,
    ) -> Tensor<'c> {
        let mode = match mode {
            RopeMode::Normal => sys::GGML_ROPE_TYPE_NORMAL,
            RopeMode::Neox => sys::GGML_ROPE_TYPE_NEOX,
        } as i32;
        let factors = freq_factors.map_or(std::ptr::null_mut(), |f| f.raw());
        // SAFETY: as above (ggml asserts the factors' length); YaRN off (ext_factor 0).
        self.wrap(unsafe {
            sys::ggml_rope_ext(
                self.raw(),
                a.raw(),
                pos.raw(),
                factors,
                n_dims as i32,
                mode,
                0,
                freq_base,
                freq_scale,
                0.0,
                1.0,
                32.0,
                1.0,
            )
        })
    }

    /// Copies (and converts) `src` into `dst`, typically a view of a cache tensor. Refuses a
    /// destination in borrowed read-only memory.
    pub fn cpy<'c>(&'c self, src: Tensor<'c>, dst: Tensor<'c>) -> Result<Tensor<'c>> {
        let root = root_of(dst);
        if root.has_data() && overlaps_read_only(root.get().data as usize, root.n_bytes()) {
            return Err(GgmlError::ReadOnly { name: dst.name() });
        }
        // SAFETY: as above; ggml asserts equal element counts.
        Ok(self.wrap(unsafe { sys::ggml_cpy(self.raw(), src.raw(), dst.raw()) }))
    }

    /// Writes the rows of `src` into rows `idx` (I32) of `dst` (converting to its type): the
    /// KV cache update. Refuses a destination in borrowed read-only memory.
    pub fn set_rows<'c>(
        &'c self,
        dst: Tensor<'c>,
        src: Tensor<'c>,
        idx: Tensor<'c>,
    ) -> Result<Tensor<'c>> {
        let root = root_of(dst);
        if root.has_data() && overlaps_read_only(root.get().data as usize, root.n_bytes()) {
            return Err(GgmlError::ReadOnly { name: dst.name() });
        }
        // SAFETY: live tensors; ggml asserts shapes and index type.
        Ok(self.wrap(unsafe { sys::ggml_set_rows(self.raw(), dst.raw(), src.raw(), idx.raw()) }))
    }

    /// gelu(a) * b, fused (Gemma's GeGLU feed-forward).
    pub fn geglu<'c>(&'c self, a: Tensor<'c>, b: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: live tensors; ggml asserts equal shapes.
        self.wrap(unsafe { sys::ggml_geglu_split(self.raw(), a.raw(), b.raw()) })
    }

    /// Makes `a` contiguous in memory.
    pub fn cont<'c>(&'c self, a: Tensor<'c>) -> Tensor<'c> {
        // SAFETY: as above.
        self.wrap(unsafe { sys::ggml_cont(self.raw(), a.raw()) })
    }

    /// Same data, new shape (element count must match; `a` contiguous).
    pub fn reshape<'c>(&'c self, a: Tensor<'c>, shape: &[usize]) -> Tensor<'c> {
        let d = |i: usize| shape.get(i).copied().unwrap_or(1) as i64;
        // SAFETY: as above; ggml asserts contiguity and element count.
        self.wrap(unsafe {
            match shape.len() {
                1 => sys::ggml_reshape_1d(self.raw(), a.raw(), d(0)),
                2 => sys::ggml_reshape_2d(self.raw(), a.raw(), d(0), d(1)),
                3 => sys::ggml_reshape_3d(self.raw(), a.raw(), d(0), d(1), d(2)),
                _ => sys::ggml_reshape_4d(self.raw(), a.raw(), d(0), d(1), d(2), d(3)),
            }
        })
    }

    /// Reorders dimensions: dimension i of `a` becomes dimension `axes[i]` of the result.
    pub fn permute<'c>(&'c self, a: Tensor<'c>, axes: [usize; 4]) -> Tensor<'c> {
        let [x, y, z, w] = axes.map(|v| v as i32);
        // SAFETY: as above; ggml asserts a permutation of 0..4.
        self.wrap(unsafe { sys::ggml_permute(self.raw(), a.raw(), x, y, z, w) })
    }

    /// A view of `a` with `shape`, byte strides `strides` (for dims 1..) and byte `offset`.
    /// ggml asserts that the view lies inside `a`.
    pub fn view<'c>(
        &'c self,
        a: Tensor<'c>,
        shape: &[usize],
        strides: &[usize],
        offset: usize,
    ) -> Tensor<'c> {
        let d = |i: usize| shape.get(i).copied().unwrap_or(1) as i64;
        let s = |i: usize| strides.get(i).copied().unwrap_or(0);
        // SAFETY: as above.
        self.wrap(unsafe {
            match shape.len() {
                1 => sys::ggml_view_1d(self.raw(), a.raw(), d(0), offset),
                2 => sys::ggml_view_2d(self.raw(), a.raw(), d(0), d(1), s(0), offset),
                3 => sys::ggml_view_3d(self.raw(), a.raw(), d(0), d(1), d(2), s(0), s(1), offset),
                _ => sys::ggml_view_4d(
                    self.raw(),
                    a.raw(),
                    d(0),
                    d(1),
                    d(2),
                    d(3),
                    s(0),
                    s(1),
                    s(2),
                    offset,
                ),
            }
        })
    }

    /// Fused attention: softmax(q·kᵀ·scale + mask)·v with an optional tanh soft-cap on the
    /// logits. q: (head_dim, n_q, heads), k/v: (head_dim, n_kv, kv_heads); result
    /// (head_dim, heads, n_q), F32.
    pub fn flash_attn_ext<'c>(
        &'c self,
        q: Tensor<'c>,
        k: Tensor<'c>,
        v: Tensor<'c>,
        mask: Option<Tensor<'c>>,
        scale: f32,
        logit_softcap: f32,
    ) -> Tensor<'c> {
        let m = mask.map_or(std::ptr::null_mut(), |m| m.raw());
        // SAFETY: as above.
        self.wrap(unsafe {
            sys::ggml_flash_attn_ext(
                self.raw(),
                q.raw(),
                k.raw(),
                v.raw(),
                m,
                scale,
                0.0,
                logit_softcap,
            )
        })
    }
}

/// The tensor that owns the memory a view looks at.
fn root_of(t: Tensor<'_>) -> Tensor<'_> {
    let mut cur = t;
    while let Some(src) = NonNull::new(cur.get().view_src) {
        cur = Tensor {
            raw: src,
            _ctx: PhantomData,
        };
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_shapes_are_errors() {
        let ctx = Context::new(1 << 20).unwrap();
        assert!(ctx.new_tensor(Type::F32, &[], "a").is_err());
        assert!(ctx.new_tensor(Type::F32, &[1, 1, 1, 1, 1], "a").is_err());
        let e = ctx.new_tensor(Type::Q4_K, &[640, 2], "w").err().unwrap();
        assert!(
            e.to_string().contains("'w'") && e.to_string().contains("256"),
            "{e}"
        );
        let e = ctx
            .new_tensor(Type::F32, &[1 << 40, 1 << 40], "big")
            .err()
            .unwrap();
        assert!(
            matches!(e, GgmlError::ContextFull { .. } | GgmlError::Shape { .. }),
            "{e}"
        );
    }

    #[test]
    fn full_context_is_an_error_not_an_abort() {
        let ctx = Context::new(4096).unwrap();
        let e = ctx.new_tensor(Type::F32, &[4096], "x").err().unwrap();
        assert!(matches!(e, GgmlError::ContextFull { .. }), "{e}");
    }

    #[test]
    fn borrowed_data_is_read_only() {
        let weights: Vec<u8> = (0..64u8).collect();
        let wctx = Context::metadata_only(4, 0).unwrap();
        let w = wctx
            .tensor_from_bytes(Type::F32, &[4, 4], "w", &weights)
            .unwrap();
        assert_eq!(w.read_bytes().unwrap(), weights);
        assert!(matches!(
            w.write_bytes(&weights),
            Err(GgmlError::ReadOnly { .. })
        ));
        let ctx = Context::new(1 << 20).unwrap();
        let src = ctx.new_tensor(Type::F32, &[4], "src").unwrap();
        let row = ctx.view(w, &[4], &[], 16);
        assert!(matches!(ctx.cpy(src, row), Err(GgmlError::ReadOnly { .. })));
        let e = wctx
            .tensor_from_bytes(Type::F32, &[5, 4], "short", &weights)
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                GgmlError::DataSize {
                    expected: 80,
                    got: 64,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn metadata_only_tensors_have_no_data() {
        let ctx = Context::metadata_only(2, 0).unwrap();
        let t = ctx.new_tensor(Type::F32, &[8], "t").unwrap();
        assert!(matches!(t.read_bytes(), Err(GgmlError::NoData { .. })));
    }
}
