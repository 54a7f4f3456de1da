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

/// Where an ELF executable's own bytes end: the end of its section header table, which linkers
/// and `strip` put last. None for a file that is not a little-endian ELF or has no sections.
pub fn executable_end(file: &mut File) -> io::Result<Option<u64>> {
    let mut h = [0u8; 64];
    file.seek(SeekFrom::Start(0))?;
    let n = file.read(&mut h)?;
    file.seek(SeekFrom::Start(0))?;
    if n < 52 || &h[..4] != b"\x7fELF" || h[5] != 1 {
        return Ok(None);
    }
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]) as u64;
    let (shoff, entsize, count) = match h[4] {
        1 => (
            u32::from_le_bytes(h[0x20..0x24].try_into().expect("4 bytes")) as u64,
            u16_at(0x2E),
            u16_at(0x30),
        ),
        2 if n >= 64 => (
            u64::from_le_bytes(h[0x28..0x30].try_into().expect("8 bytes")),
            u16_at(0x3A),
            u16_at(0x3C),
        ),
        _ => return Ok(None),
    };
    Ok((shoff > 0).then(|| shoff.saturating_add(entsize * count)))
}

/// Why `file` (an executable of `file_len` bytes) looks like a bundle whose model cannot be
/// found: bytes after the executable's end but no consistent trailer (a damaged or truncated
/// bundle). None for an intact bundle or a plain executable.
pub fn damage(file: &mut File, file_len: u64) -> io::Result<Option<String>> {
    if find(file, file_len)?.is_some() {
        return Ok(None);
    }
    let Some(end) = executable_end(file)? else {
        return Ok(None);
    };
    if file_len <= end {
        return Ok(None);
    }
    let mut t = [0u8; TRAILER_LEN as usize];
    let has_magic = file_len >= TRAILER_LEN && {
        file.seek(SeekFrom::Start(file_len - TRAILER_LEN))?;
        file.read_exact(&mut t)?;
        file.seek(SeekFrom::Start(0))?;
        &t[16..] == MAGIC
    };
    Ok(Some(if has_magic {
        format!(
            "its trailer does not match its {file_len} bytes (the file is truncated or altered)"
        )
    } else {
        format!(
            "the {} bytes after the program lack the trailer that locates the model (the file \
             is damaged or truncated)",
            file_len - end
        )
    }))
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

    #[test]
    fn an_executable_ends_with_its_section_headers() {
        let exe = std::env::current_exe().unwrap();
        let mut f = File::open(&exe).unwrap();
        let len = f.metadata().unwrap().len();
        assert_eq!(executable_end(&mut f).unwrap(), Some(len));
        assert_eq!(damage(&mut f, len).unwrap(), None);
        let mut not_elf = tempfile::tempfile().unwrap();
        not_elf.write_all(&[0u8; 100]).unwrap();
        assert_eq!(executable_end(&mut not_elf).unwrap(), None);
    }
}
