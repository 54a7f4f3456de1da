//! The weights' memory on transparent huge pages. A file just written sits in the page cache in
//! 4 KiB folios; `Gguf::fault_in` (a model loaded to run) must bring it onto 2 MiB pages (re-reading it once) wherever this
//! kernel gives a file map huge pages at all, and its bytes must come back unchanged.
//!
//! Whether the kernel can is probed here independently of gemlet's code: a second file, dropped
//! from the cache, mapped with `MADV_HUGEPAGE` and touched. Where the probe gets none (no THP,
//! no large folios on this file system), only the bytes are checked, and the test says so.
#![cfg(target_os = "linux")]

use crate::common::smaps_bytes;
use gemlet::ggml::Type;
use gemlet::gguf::{Gguf, GgufWriter, OpenOptions};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// 16 MiB of tensor data: room for seven or eight whole 2 MiB regions.
const FLOATS: u64 = 4 << 20;

fn scratch(name: &str) -> PathBuf {
    // The target directory, not /tmp: it lies on the file system the models do, which a tmpfs
    // /tmp would not.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("huge_pages");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.gguf", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Writes a GGUF with one F32 tensor of pseudo-random bytes, synced to disk (so its cached pages
/// are clean, as a download's are once written back), and returns the bytes.
fn write(path: &Path, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let data: Vec<u8> = (0..FLOATS * 4)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect();
    let mut w = GgufWriter::new();
    w.add_tensor("blob", Type::F32, &[FLOATS]).unwrap();
    let mut tw = w.create(path).unwrap();
    tw.write_tensor(&data).unwrap();
    tw.finish().unwrap();
    File::open(path).unwrap().sync_all().unwrap();
    data
}

fn drop_cache(file: &File) {
    // SAFETY: posix_fadvise only reads its arguments.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Maps `path` (advised `MADV_HUGEPAGE` if `advise`), touches every page, and returns the
/// huge-page bytes of the map.
fn map_and_touch(path: &Path, advise: bool) -> u64 {
    let file = File::open(path).unwrap();
    // SAFETY: a read-only map of a file only this test writes, and it no longer does.
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    if advise {
        map.advise(memmap2::Advice::HugePage).unwrap();
    }
    let sum: u64 = map.iter().step_by(4096).map(|&b| b as u64).sum();
    std::hint::black_box(sum);
    smaps_bytes(map.as_ptr() as usize, "FilePmdMapped:")
}

/// Huge-page bytes the kernel gives a fresh file's map after its cache is dropped.
fn kernel_probe() -> u64 {
    let path = scratch("probe");
    write(&path, 7);
    drop_cache(&File::open(&path).unwrap());
    let got = map_and_touch(&path, true);
    std::fs::remove_file(&path).unwrap();
    got
}

/// Puts `path` in the page cache in 4 KiB folios, as a file that was just written or copied
/// can be: dropped, then read a page at a time with readahead off.
fn cache_in_small_folios(path: &Path) {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).unwrap();
    drop_cache(&file);
    // SAFETY: as in drop_cache.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    let mut page = [0u8; 4096];
    let mut at = 0;
    while file.read_at(&mut page, at).unwrap() > 0 {
        at += 4096;
    }
}

#[test]
fn a_fresh_file_comes_onto_huge_pages_unchanged() {
    let can = kernel_probe();
    let path = scratch("fresh");
    let data = write(&path, 1);
    cache_in_small_folios(&path);
    let before = map_and_touch(&path, false);

    let g = Gguf::open(&path).unwrap();
    assert!(g.huge_pages().is_none(), "opening faults in no tensor data");
    let hp = g.fault_in().expect("huge pages are measured on Linux");
    assert_eq!(g.huge_pages(), Some(hp));
    let t = g.tensor("blob").unwrap();
    assert!(g.tensor_data(t) == data.as_slice(), "the bytes changed");
    eprintln!("kernel probe {can} B; small-folio cache maps {before} B huge; first open {hp:?}");
    assert!(hp.possible >= 12 << 20, "{hp:?}");
    // The figure must be the kernel's own, whatever it is.
    let map_start = g.tensor_data(t).as_ptr() as usize - (g.data_offset() + t.offset) as usize;
    assert_eq!(hp.bytes, smaps_bytes(map_start, "FilePmdMapped:"));
    if can == 0 {
        eprintln!("this kernel gives file maps no huge pages here: bytes checked only");
        return;
    }
    assert!(
        before < hp.possible / 2,
        "the setup left big folios: {before} B huge"
    );
    // A 2 MiB folio allocation may fail on fragmented memory and fall back to small ones, so
    // three quarters of the regions, not all.
    assert!(hp.refaulted, "{hp:?}");
    assert!(hp.bytes >= hp.possible * 3 / 4, "{hp:?}");
    drop(g);

    // The cache now holds big folios: the next open finds them and reads nothing again.
    let g = Gguf::open(&path).unwrap();
    let hp2 = g.fault_in().unwrap();
    assert!(!hp2.refaulted, "{hp2:?}");
    assert!(hp2.bytes >= hp2.possible * 3 / 4, "{hp2:?}");
    assert!(g.tensor_data(g.tensor("blob").unwrap()) == data.as_slice());
    drop(g);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn no_mmap_reads_onto_huge_pages() {
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let path = scratch("anon");
    let data = write(&path, 2);
    let opts = OpenOptions {
        mmap: false,
        ..OpenOptions::default()
    };
    let g = Gguf::open_with(&path, opts).unwrap();
    assert!(g.tensor_data(g.tensor("blob").unwrap()) == data.as_slice());
    let hp = g.huge_pages().expect("huge pages are measured on Linux");
    eprintln!("THP {}; {hp:?}", thp.trim());
    assert!(!hp.refaulted);
    if thp.contains("[always]") || thp.contains("[madvise]") {
        assert!(hp.bytes >= hp.possible * 3 / 4, "{hp:?}");
    } else {
        assert_eq!(hp.bytes, 0, "{hp:?}");
    }
    drop(g);
    std::fs::remove_file(&path).unwrap();
}
