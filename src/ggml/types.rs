//! ggml tensor types as a Rust enum, with their block geometry.
//!
//! The table is plain Rust (no FFI) so that the GGUF reader can validate a tensor table before
//! anything touches ggml; a unit test checks every row against ggml itself.

use std::fmt;

macro_rules! types {
    ($( $variant:ident = $id:literal, $name:literal, $block:literal, $bytes:literal, $quant:literal, $matmul:literal, $quantize:literal; )*) => {
        /// A ggml element type (`enum ggml_type`). Ids are the ones stored in GGUF tensor tables.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)]
        pub enum Type {
            $( $variant = $id, )*
        }

        impl Type {
            /// Every type ggml can store, in id order.
            pub const ALL: &'static [Type] = &[ $( Type::$variant, )* ];

            /// The type for a ggml/GGUF type id, or `None` for ids that are unknown or removed.
            pub fn from_id(id: u32) -> Option<Type> {
                match id {
                    $( $id => Some(Type::$variant), )*
                    _ => None,
                }
            }

            /// ggml's own name for the type (`ggml_type_name`): "f32", "q4_K", ...
            pub fn name(self) -> &'static str {
                match self { $( Type::$variant => $name, )* }
            }

            /// Elements per block (1 for plain types).
            pub fn block_size(self) -> usize {
                match self { $( Type::$variant => $block, )* }
            }

            /// Bytes per block.
            pub fn block_bytes(self) -> usize {
                match self { $( Type::$variant => $bytes, )* }
            }

            /// Whether the type is a block-quantized format.
            pub fn is_quantized(self) -> bool {
                match self { $( Type::$variant => $quant, )* }
            }

            /// Whether ggml's CPU backend multiplies a matrix of this type (its `type_traits_cpu`
            /// has a `vec_dot`; tests/it/ggml_ops.rs checks this column against the vendored
            /// source): a weight of any other type would reach a NULL kernel. Every such type
            /// also dequantizes, so rows of it can be looked up (`get_rows`).
            pub fn has_cpu_matmul(self) -> bool {
                match self { $( Type::$variant => $matmul, )* }
            }

            /// Whether `ggml_quantize_chunk` can produce the type (it aborts on any other;
            /// tests/it/ggml_ops.rs checks this column against the vendored source).
            pub fn can_quantize(self) -> bool {
                match self { $( Type::$variant => $quantize, )* }
            }
        }
    };
}

// Columns: variant = id, name, elements per block, bytes per block, block-quantized, CPU matmul,
// quantizable.
types! {
    F32 = 0, "f32", 1, 4, false, true, true;
    F16 = 1, "f16", 1, 2, false, true, true;
    Q4_0 = 2, "q4_0", 32, 18, true, true, true;
    Q4_1 = 3, "q4_1", 32, 20, true, true, true;
    Q5_0 = 6, "q5_0", 32, 22, true, true, true;
    Q5_1 = 7, "q5_1", 32, 24, true, true, true;
    Q8_0 = 8, "q8_0", 32, 34, true, true, true;
    Q8_1 = 9, "q8_1", 32, 36, true, false, false;
    Q2_K = 10, "q2_K", 256, 84, true, true, true;
    Q3_K = 11, "q3_K", 256, 110, true, true, true;
    Q4_K = 12, "q4_K", 256, 144, true, true, true;
    Q5_K = 13, "q5_K", 256, 176, true, true, true;
    Q6_K = 14, "q6_K", 256, 210, true, true, true;
    Q8_K = 15, "q8_K", 256, 292, true, false, false;
    IQ2_XXS = 16, "iq2_xxs", 256, 66, true, true, true;
    IQ2_XS = 17, "iq2_xs", 256, 74, true, true, true;
    IQ3_XXS = 18, "iq3_xxs", 256, 98, true, true, true;
    IQ1_S = 19, "iq1_s", 256, 50, true, true, true;
    IQ4_NL = 20, "iq4_nl", 32, 18, true, true, true;
    IQ3_S = 21, "iq3_s", 256, 110, true, true, true;
    IQ2_S = 22, "iq2_s", 256, 82, true, true, true;
    IQ4_XS = 23, "iq4_xs", 256, 136, true, true, true;
    I8 = 24, "i8", 1, 1, false, false, false;
    I16 = 25, "i16", 1, 2, false, false, false;
    I32 = 26, "i32", 1, 4, false, false, false;
    I64 = 27, "i64", 1, 8, false, false, false;
    F64 = 28, "f64", 1, 8, false, false, false;
    IQ1_M = 29, "iq1_m", 256, 56, true, true, true;
    BF16 = 30, "bf16", 1, 2, false, true, true;
    TQ1_0 = 34, "tq1_0", 256, 54, true, true, true;
    TQ2_0 = 35, "tq2_0", 256, 66, true, true, true;
    MXFP4 = 39, "mxfp4", 32, 17, true, true, true;
    NVFP4 = 40, "nvfp4", 64, 36, true, true, true;
    Q1_0 = 41, "q1_0", 128, 18, true, true, true;
    Q2_0 = 42, "q2_0", 64, 18, true, true, true;
}

impl Type {
    /// The ggml type id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Bytes of a row of `n` elements, or `None` when `n` is not a whole number of blocks or the
    /// size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if n % block != 0 {
            return None;
        }
        (n / block).checked_mul(self.block_bytes() as u64)
    }

    /// Looks a type up by ggml's name, case-insensitively ("Q4_K", "q8_0", "f16").
    pub fn from_name(name: &str) -> Option<Type> {
        Type::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_agrees_with_ggml() {
        for &t in Type::ALL {
            let info = crate::ggml::type_info_from_ggml(t);
            assert_eq!(info.name, t.name(), "name of {t:?}");
            assert_eq!(info.block_size, t.block_size(), "block size of {t:?}");
            assert_eq!(info.block_bytes, t.block_bytes(), "block bytes of {t:?}");
            assert_eq!(info.quantized, t.is_quantized(), "quantized flag of {t:?}");
        }
        // Ids the table leaves out are exactly the ones ggml has removed.
        for id in 0..crate::ggml::TYPE_COUNT {
            if Type::from_id(id).is_none() {
                assert_eq!(
                    crate::ggml::ggml_block_size_of_id(id),
                    0,
                    "id {id} is live in ggml"
                );
            }
        }
    }

    #[test]
    fn row_bytes_checks_blocks() {
        assert_eq!(Type::Q4_K.row_bytes(512), Some(288));
        assert_eq!(Type::Q4_K.row_bytes(640), None);
        assert_eq!(Type::F32.row_bytes(3), Some(12));
        assert_eq!(Type::F32.row_bytes(u64::MAX), None);
        assert_eq!(Type::from_name("Q8_0"), Some(Type::Q8_0));
    }
}
