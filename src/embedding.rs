//! What is done to an embedding after the model: normalisation, as llama.cpp's
//! `common_embd_normalize` does it (`llama-embedding --embd-normalize N`).

/// How an embedding is scaled before it is printed or served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    /// As the model made it (llama.cpp's -1).
    None,
    /// Scaled so that the largest magnitude is 32760, an int16 range (0).
    MaxAbs,
    /// Unit Euclidean length, the default (2).
    L2,
    /// Unit p-norm for p = 1 (taxicab) or p > 2.
    PNorm(u32),
}

impl Normalize {
    /// llama.cpp's `--embd-normalize` number.
    pub fn from_llama(n: i64) -> Option<Normalize> {
        match n {
            -1 => Some(Normalize::None),
            0 => Some(Normalize::MaxAbs),
            2 => Some(Normalize::L2),
            1 | 3..=64 => Some(Normalize::PNorm(n as u32)),
            _ => None,
        }
    }

    /// `none`, `l2`, `max` or `taxicab`.
    pub fn from_name(s: &str) -> Option<Normalize> {
        match s {
            "none" => Some(Normalize::None),
            "l2" | "euclidean" => Some(Normalize::L2),
            "max" => Some(Normalize::MaxAbs),
            "taxicab" | "l1" => Some(Normalize::PNorm(1)),
            _ => None,
        }
    }

    /// Scales `v` in place. The sum is taken in f64 over f32 terms and the factor applied in
    /// f32, as llama.cpp does, so that the numbers are its numbers; a zero vector stays zero.
    pub fn apply(self, v: &mut [f32]) {
        let sum: f64 = match self {
            Normalize::None => return,
            Normalize::MaxAbs => v.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64)) / 32760.0,
            Normalize::L2 => v.iter().map(|&x| (x * x) as f64).sum::<f64>().sqrt(),
            Normalize::PNorm(p) => v
                .iter()
                .map(|&x| (x.abs() as f64).powf(p as f64))
                .sum::<f64>()
                .powf(1.0 / p as f64),
        };
        let norm = if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 };
        for x in v {
            *x *= norm;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms() {
        let mut v = [3.0f32, -4.0];
        Normalize::L2.apply(&mut v);
        assert_eq!(v, [0.6, -0.8]);
        let mut v = [3.0f32, -4.0];
        Normalize::PNorm(1).apply(&mut v);
        // The factor 1/7 rounded to f32 first, as llama.cpp applies it.
        let f = (1.0f64 / 7.0) as f32;
        assert_eq!(v, [3.0 * f, -4.0 * f]);
        let mut v = [1.0f32, -2.0];
        Normalize::MaxAbs.apply(&mut v);
        assert_eq!(v, [16380.0, -32760.0]);
        let mut v = [0.0f32; 3];
        Normalize::L2.apply(&mut v);
        assert_eq!(v, [0.0; 3]);
        assert_eq!(Normalize::from_llama(2), Some(Normalize::L2));
        assert_eq!(Normalize::from_llama(-2), None);
    }
}
