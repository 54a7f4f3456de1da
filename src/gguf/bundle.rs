//! A GGUF carried inside another file: `gemlet bundle` appends a model to a copy of the
//! executable, so one file holds both. Layout:
//!
//! ```text
//! [executable][zero padding to a 64 KiB boundary][GGUF][trailer: offset u64, length u64, magic]
//! ```
//!
//! The GGUF starts on a 64 KiB boundary, which is a page boundary for 4K, 16K and 64K pages,
//! so mapping it from the file gives its tensor data the alignment it has in a plain file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Marks the trailer (the last bytes of a bundle).
pub const MAGIC: &[u8; 8] = b"GMLTBNDL";
pub const TRAILER_LEN: u64 = 24;
/// Where the GGUF may start: a multiple of this.
pub const ALIGN: u64 = 64 * 1024;

/// Where the GGUF lies inside a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    pub offset: u64,
    pub len: u64,
}

/// The trailer recording `e`.
pub fn trailer(e: Embedded) -> [u8; TRAILER_LEN as usize] {
    let mut t = [0u8; TRAILER_LEN as usize];
    t[..8].copy_from_slice(&e.offset.to_le_bytes());
    t[8..16].copy_from_slice(&e.len.to_le_bytes());
    t[16..].copy_from_slice(MAGIC);
    t
}

/// The GGUF inside `file` (of `file_len` bytes), if it is a bundle with a consistent trailer.
pub fn find(file: &mut File, file_len: u64) -> io::Result<Option<Embedded>> {
    if file_len < TRAILER_LEN + ALIGN {
        return Ok(None);
    }
    let mut t = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(file_len - TRAILER_LEN))?;
    file.read_exact(&mut t)?;
    file.seek(SeekFrom::Start(0))?;
    if &t[16..] != MAGIC {
        return Ok(None);
    }
    let word = |i: usize| u64::from_le_bytes(t[i..i + 8].try_into().expect("8 bytes"));
    let e = Embedded {
        offset: word(0),
        len: word(8),
    };
    let consistent = e.offset % ALIGN == 0
        && e.offset > 0
        && e.offset
            .checked_add(e.len)
            .and_then(|end| end.checked_add(TRAILER_LEN))
            == Some(file_len);
    Ok(consistent.then_some(e))
}

/// Writes `program` (an executable, or a bundle whose model is replaced), padding, the GGUF
/// `model` (a GGUF file, or the GGUF inside a bundle) and the trailer to `out`. Returns where
/// the GGUF went.
pub fn write(program: &mut File, model: &mut File, out: &mut impl Write) -> io::Result<Embedded> {
    let program_len = program.metadata()?.len();
    let exe_len = match find(program, program_len)? {
        Some(e) => e.offset,
        None => program_len,
    };
    io::copy(&mut program.take(exe_len), out)?;
    let offset = exe_len.div_ceil(ALIGN) * ALIGN;
    io::copy(&mut io::repeat(0).take(offset - exe_len), out)?;
    // A model taken from a bundle: only its GGUF.
    let model_len = model.metadata()?.len();
    let gguf = find(model, model_len)?.unwrap_or(Embedded {
        offset: 0,
        len: model_len,
    });
    model.seek(SeekFrom::Start(gguf.offset))?;
    let len = io::copy(&mut model.take(gguf.len), out)?;
    let e = Embedded { offset, len };
    out.write_all(&trailer(e))?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_round_trip_and_rejects() {
        let dir = std::env::temp_dir().join(format!("gemlet-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("exe");
        let model = dir.join("model");
        std::fs::write(&exe, vec![0x7f; 1000]).unwrap();
        std::fs::write(&model, b"GGUF and the rest").unwrap();
        let out = dir.join("bundle");
        let e = write(
            &mut File::open(&exe).unwrap(),
            &mut File::open(&model).unwrap(),
            &mut File::create(&out).unwrap(),
        )
        .unwrap();
        assert_eq!(
            e,
            Embedded {
                offset: ALIGN,
                len: 17
            }
        );
        let mut f = File::open(&out).unwrap();
        let len = f.metadata().unwrap().len();
        assert_eq!(len, ALIGN + 17 + TRAILER_LEN);
        assert_eq!(find(&mut f, len).unwrap(), Some(e));
        // Re-bundling a bundle replaces its model.
        let again = dir.join("again");
        let e2 = write(
            &mut File::open(&out).unwrap(),
            &mut File::open(&exe).unwrap(),
            &mut File::create(&again).unwrap(),
        )
        .unwrap();
        assert_eq!(
            e2,
            Embedded {
                offset: ALIGN,
                len: 1000
            }
        );
        // A trailer that does not describe the file is ignored.
        let mut bytes = std::fs::read(&out).unwrap();
        bytes.insert(0, 0);
        std::fs::write(&again, &bytes).unwrap();
        let mut f = File::open(&again).unwrap();
        assert_eq!(find(&mut f, len + 1).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
