//! Quantization and dequantization of rows with ggml's own reference routines.

use super::{sys, GgmlError, Result, Type};

/// Quantizes `src` (rows of `n_per_row` values) to `ty`, without an importance matrix.
pub fn quantize(ty: Type, src: &[f32], n_per_row: usize) -> Result<Vec<u8>> {
    let shape_err = |what: String| GgmlError::Shape {
        name: format!("quantize to {ty}"),
        what,
    };
    if !ty.can_quantize() {
        return Err(GgmlError::Unsupported(ty, "quantized to"));
    }
    // SAFETY: pure query on a live type id.
    if unsafe { sys::ggml_quantize_requires_imatrix(ty.id()) } {
        return Err(GgmlError::Unsupported(
            ty,
            "quantized without an importance matrix",
        ));
    }
    if n_per_row == 0 || src.len() % n_per_row != 0 {
        return Err(shape_err(format!(
            "{} values are not whole rows of {n_per_row}",
            src.len()
        )));
    }
    let row = ty
        .row_bytes(n_per_row as u64)
        .ok_or_else(|| shape_err(format!("row length {n_per_row} is not whole blocks")))?
        as usize;
    let rows = src.len() / n_per_row;
    let mut dst = vec![0u8; row * rows];
    // SAFETY: ggml_quantize_init builds lookup tables (idempotent, thread-safe in ggml). src holds
    // rows*n_per_row floats and dst rows*row bytes, exactly what the chunk call reads and writes.
    let written = unsafe {
        sys::ggml_quantize_init(ty.id());
        sys::ggml_quantize_chunk(
            ty.id(),
            src.as_ptr(),
            dst.as_mut_ptr().cast(),
            0,
            rows as i64,
            n_per_row as i64,
            std::ptr::null(),
        )
    };
    debug_assert_eq!(written, dst.len());
    Ok(dst)
}

/// Dequantizes `n` values of type `ty` from `bytes` with ggml's `to_float` routine.
pub fn dequantize(ty: Type, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let expected = ty.row_bytes(n as u64).ok_or_else(|| GgmlError::Shape {
        name: format!("dequantize from {ty}"),
        what: format!("{n} values are not whole blocks of {}", ty.block_size()),
    })? as usize;
    if bytes.len() != expected {
        return Err(GgmlError::DataSize {
            name: format!("dequantize from {ty}"),
            expected,
            got: bytes.len(),
        });
    }
    if ty == Type::F32 {
        return Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect());
    }
    // SAFETY: ggml's trait table is static; to_float reads `expected` bytes, writes n floats.
    unsafe {
        let traits = &*sys::ggml_get_type_traits(ty.id());
        let to_float = traits
            .to_float
            .ok_or(GgmlError::Unsupported(ty, "converted to f32"))?;
        let mut out = vec![0f32; n];
        to_float(bytes.as_ptr().cast(), out.as_mut_ptr(), n as i64);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_round_trip_is_close() {
        let src: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let q = quantize(Type::Q8_0, &src, 32).unwrap();
        assert_eq!(q.len(), 2 * 34);
        let back = dequantize(Type::Q8_0, &q, 64).unwrap();
        // Q8_0: step d = max|x|/127 per block of 32, error <= d/2 plus up to 127 steps of the
        // scale's f16 rounding (2^-11 relative): d * (0.5 + 127 * 2^-11) < 0.57 d.
        for (a, b) in src.iter().zip(&back) {
            assert!((a - b).abs() <= 0.57 / 127.0, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(quantize(Type::Q4_K, &[0.0; 640], 640).is_err());
        assert!(quantize(Type::Q8_0, &[0.0; 33], 32).is_err());
        assert!(quantize(Type::IQ2_XXS, &[0.0; 256], 256).is_err());
        assert!(quantize(Type::I32, &[0.0; 4], 4).is_err());
        assert!(dequantize(Type::Q8_0, &[0u8; 33], 32).is_err());
    }
}
