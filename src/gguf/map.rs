//! How a model file comes into memory: mapped (the default: the page cache's own pages, shared
//! with every other reader of the file) or read into anonymous memory (`--no-mmap`), on
//! transparent huge pages wherever the kernel allows them.
//!
//! Why huge pages: every generated token streams all the weights (247 MB for Gemma 3 270M
//! Q4_K_M). On 4 KiB pages that is ~60k TLB misses per token, each a page walk (a nested one
//! in a VM), and the hardware prefetchers stop at every page boundary; on 2 MiB pages there are
//! 120 of them.
//!
//! A map of a file gets 2 MiB pages only where the page cache holds the file in 2 MiB folios.
//! Readahead makes those when the map is advised `MADV_HUGEPAGE` before it is touched, but a
//! file that was just written (downloaded, copied, assembled from parts) sits in the cache in
//! 4 KiB folios, and every process that maps it gets 4 KiB pages until the cache is evicted.
//! So when the map comes out mostly on small pages, one 2 MiB region is dropped from the cache
//! and read again as a probe; if it comes back on a huge page, the whole file is (once: later
//! loads, ours or anyone's, find the big folios). Where the kernel or file system cannot (no
//! THP, no large folios, pages pinned by another process), the probe costs one 2 MiB read.

use std::fs::File;
use std::io;
use std::sync::OnceLock;

use memmap2::Mmap;

/// The transparent-huge-page size of x86-64 and of arm64/armv7 with 4 KiB pages.
const HUGE: usize = 2 << 20;

/// How much of a model's memory sits on huge pages, measured at open from `/proc/self/smaps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HugePages {
    /// Bytes mapped through huge pages.
    pub bytes: u64,
    /// Bytes that could be: the 2 MiB-aligned regions lying wholly inside the map.
    pub possible: u64,
    /// Whether the file's small cached pages were dropped and read again into huge ones.
    pub refaulted: bool,
}

/// A model file's bytes in memory.
pub(super) struct Mapped {
    map: Mmap,
    /// The file and the offset of the map's first byte in it: to drop and read again a file
    /// map's pages, and to map a released range of anonymous memory back from the file.
    file: File,
    offset: u64,
    /// Read into anonymous memory (`--no-mmap`) rather than a map of the file.
    anonymous: bool,
    locked: bool,
    /// Measured where the bytes were read or faulted in: at open for anonymous memory, at
    /// [`Mapped::fault_in`] for a file map.
    huge_pages: OnceLock<Option<HugePages>>,
}

impl Mapped {
    /// `len` bytes of `file` from `offset`: mapped (`mmap`; nothing is read but the pages
    /// touched) or read into anonymous memory, and locked in RAM with `mlock`.
    pub(super) fn open(
        mut file: File,
        offset: u64,
        len: usize,
        mmap: bool,
        mlock: bool,
    ) -> io::Result<Mapped> {
        let huge_pages = OnceLock::new();
        let map = if mmap {
            map_file(&file, offset, len)?
        } else {
            let (map, huge) = read_anon(&mut file, offset, len)?;
            let _ = huge_pages.set(huge);
            map
        };
        if mlock {
            map.lock().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("mlock of {len} bytes failed ({e}); raise `ulimit -l`"),
                )
            })?;
        }
        Ok(Mapped {
            map,
            file,
            offset,
            anonymous: !mmap,
            locked: mlock,
            huge_pages,
        })
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Brings every page of a file map into memory now, on huge pages where the system allows
    /// (see the module's comment), and returns how much is on huge pages: for weights about to
    /// be computed with, so that the first prompt does not take ~60k page faults inside its
    /// matrix products. Done once; anonymous memory was read whole at open.
    pub(super) fn fault_in(&self) -> Option<HugePages> {
        *self.huge_pages.get_or_init(|| {
            #[cfg(target_os = "linux")]
            {
                populate(&self.map, 0, self.map.len());
                linux::file_huge_pages(&self.map, &self.file, self.offset)
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = self.map.advise(memmap2::Advice::WillNeed);
                None
            }
        })
    }

    /// The huge-page figures, once the bytes are in memory (see [`Mapped::fault_in`]).
    pub(super) fn huge_pages(&self) -> Option<HugePages> {
        self.huge_pages.get().copied().flatten()
    }

    /// Gives back the pages lying wholly inside `[from, to)` (offsets into the bytes), which
    /// read the same if touched again; returns whether any were. Locked pages stay.
    pub(super) fn release(&self, from: usize, to: usize) -> bool {
        if self.locked || from > to || to > self.map.len() {
            return false;
        }
        if !self.anonymous {
            return release(&self.map, from, to);
        }
        #[cfg(target_os = "linux")]
        return linux::map_back(&self.map, &self.file, self.offset, from, to);
        #[cfg(not(target_os = "linux"))]
        false
    }
}

/// Maps `len` bytes of `file` from `offset`, read-only. Nothing is read yet: a page comes in
/// when it is first touched, or all of them at [`Mapped::fault_in`].
fn map_file(file: &File, offset: u64, len: usize) -> io::Result<Mmap> {
    // SAFETY: the map is read-only and private to this process, so Rust's `&[u8]` views of it
    // never see a write of ours. memmap2's remaining condition, that the file is not truncated
    // or rewritten while mapped, is assumed as by every mmap-based model reader (llama.cpp's
    // included): a model file is not written while a program runs it. The map lives in
    // `Mapped`, which outlives every slice handed out of it.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)?
    };
    // Only a hint, before the first touch so that readahead picks 2 MiB folios.
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    Ok(map)
}

/// Reads `len` bytes of `file` from `offset` into anonymous, page-aligned (unlike a `Vec`) and
/// lockable memory, then makes it read-only.
fn read_anon(file: &mut File, offset: u64, len: usize) -> io::Result<(Mmap, Option<HugePages>)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut mem = memmap2::MmapMut::map_anon(len)?;
    // Only a hint: THP "madvise" gives 2 MiB pages, a kernel without THP keeps 4 KiB ones.
    #[cfg(target_os = "linux")]
    let _ = mem.advise(memmap2::Advice::HugePage);
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut mem)?;
    let map = mem.make_read_only()?;
    #[cfg(target_os = "linux")]
    let huge = linux::measure(&map, "AnonHugePages:").map(|bytes| {
        let (lo, hi) = linux::regions(&map, None);
        HugePages {
            bytes,
            possible: (hi - lo) as u64,
            refaulted: false,
        }
    });
    #[cfg(not(target_os = "linux"))]
    let huge = None;
    Ok((map, huge))
}

/// Drops this process's pages lying wholly inside `[from, to)` of a map of the file (made by
/// [`map_file`]): they read back the same bytes from the file if touched again.
///
/// A 2 MiB page that holds both dropped bytes and bytes still in use would come back whole at
/// the next touch of the latter, so the 2 MiB regions at the range's two edges are first
/// switched to small pages; the whole regions inside are dropped with their huge pages.
fn release(map: &Mmap, from: usize, to: usize) -> bool {
    let Some((lo, hi)) = whole_pages(map, from, to) else {
        return false;
    };
    let base = map.as_ptr() as usize;
    #[cfg(target_os = "linux")]
    for edge in [lo / HUGE * HUGE, (hi - 1) / HUGE * HUGE] {
        if lo > edge || hi < edge + HUGE {
            let (a, b) = (edge.max(base), (edge + HUGE).min(base + map.len()));
            let _ = map.advise_range(memmap2::Advice::NoHugePage, a - base, b - a);
        }
    }
    // SAFETY: [lo, hi) lies inside `map` (whole_pages), a private read-only map of a file that
    // is not rewritten while mapped (map_file's invariant). MADV_DONTNEED drops our pages and
    // the next read faults the same bytes back from the file, so every `&[u8]` into the range
    // stays valid and reads what it read before.
    unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo - base, hi - lo) }
        .is_ok()
}

/// The addresses of the whole pages inside `[from, to)` of `map`, if there are any.
fn whole_pages(map: &Mmap, from: usize, to: usize) -> Option<(usize, usize)> {
    let (page, base) = (page_size(), map.as_ptr() as usize);
    let (lo, hi) = (
        (base + from).next_multiple_of(page),
        (base + to) / page * page,
    );
    (lo < hi).then_some((lo, hi))
}

fn page_size() -> usize {
    // SAFETY: sysconf takes a constant and touches no memory of ours.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Faults in `[from, from + len)` of `map` for reading.
#[cfg(target_os = "linux")]
fn populate(map: &Mmap, from: usize, len: usize) {
    if map
        .advise_range(memmap2::Advice::PopulateRead, from, len)
        .is_ok()
    {
        return;
    }
    // Kernels before 5.14 have no MADV_POPULATE_READ: touch one byte per page.
    let page = page_size();
    let mut at = from;
    while at < from + len {
        // SAFETY: `from <= at < from + len <= map.len()`, so the read is inside the live map,
        // whose pages are readable; volatile so that the touch is not elided.
        unsafe { std::ptr::read_volatile(map.as_ptr().add(at)) };
        at += page;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use super::{page_size, populate, whole_pages, HugePages, HUGE};
    use memmap2::{Mmap, UncheckedAdvice};
    use std::fs::File;
    use std::os::fd::AsRawFd;

    /// The first and last 2 MiB-aligned address inside `map` that start a region lying wholly in
    /// it, as byte offsets into the map (`lo..hi`, possibly empty). A file map can use a huge
    /// page only where the address and the file offset agree modulo 2 MiB (`file_offset` of the
    /// map's first byte; `None` for anonymous memory, which has no such condition).
    pub(super) fn regions(map: &Mmap, file_offset: Option<u64>) -> (usize, usize) {
        let base = map.as_ptr() as usize;
        if let Some(off) = file_offset {
            if (base as u64).wrapping_sub(off) % HUGE as u64 != 0 {
                return (0, 0);
            }
        }
        let lo = base.next_multiple_of(HUGE) - base;
        let hi = (base + map.len()) / HUGE * HUGE;
        let hi = hi.saturating_sub(base).max(lo);
        (lo, hi)
    }

    /// `field` (a `/proc/self/smaps` line such as `FilePmdMapped:`) of the mapping that starts
    /// at `map`'s first page, in bytes.
    pub(super) fn measure(map: &Mmap, field: &str) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let start = map.as_ptr() as usize / page_size() * page_size();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some(range) = line.split(' ').next().filter(|r| r.contains('-')) {
                if let Some((from, _)) = range.split_once('-') {
                    if let Ok(from) = usize::from_str_radix(from, 16) {
                        inside = from == start;
                        continue;
                    }
                }
            }
            if inside {
                if let Some(kb) = line.strip_prefix(field) {
                    let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().ok()?;
                    return Some(kb * 1024);
                }
            }
        }
        None
    }

    /// Measures the file map's huge pages, and when it is mostly on small ones, probes one region
    /// and, if that comes back huge, reads the whole file again into huge folios.
    pub(super) fn file_huge_pages(map: &Mmap, file: &File, offset: u64) -> Option<HugePages> {
        let (lo, hi) = regions(map, Some(offset));
        let possible = (hi - lo) as u64;
        let bytes = measure(map, "FilePmdMapped:")?;
        let mut huge = HugePages {
            bytes,
            possible,
            refaulted: false,
        };
        if possible == 0 || bytes >= possible / 2 {
            return Some(huge);
        }
        // The last region holds tensor data (never the metadata a reader looks at first).
        let probe = hi - HUGE;
        refault(map, file, offset, probe, HUGE);
        let after = measure(map, "FilePmdMapped:")?;
        if after < bytes + HUGE as u64 {
            huge.bytes = after;
            return Some(huge);
        }
        refault(map, file, offset, 0, map.len());
        huge.bytes = measure(map, "FilePmdMapped:")?;
        huge.refaulted = true;
        Some(huge)
    }

    /// Drops `[from, from + len)` of the map (whose first byte is the file's byte `offset`) from
    /// this process and, where nobody else maps it, from the page cache, then faults it in again.
    fn refault(map: &Mmap, file: &File, offset: u64, from: usize, len: usize) {
        // SAFETY: [from, from + len) lies inside `map` (callers pass ranges of it), a private
        // read-only map of a file that is not rewritten while mapped (map_file's invariant):
        // dropped pages fault back in with the same bytes, so slices into them stay valid.
        let dropped = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, from, len) };
        if dropped.is_err() {
            return;
        }
        let (Ok(at), Ok(n)) = (
            libc::off_t::try_from(offset + from as u64),
            libc::off_t::try_from(len),
        ) else {
            return;
        };
        // SAFETY: posix_fadvise takes plain values (an open descriptor, offsets) and touches no
        // memory of ours; dropping clean cached pages of a file changes no data (the kernel
        // leaves dirty or still-mapped pages where they are).
        unsafe { libc::posix_fadvise(file.as_raw_fd(), at, n, libc::POSIX_FADV_DONTNEED) };
        populate(map, from, len);
    }

    /// Replaces the anonymous pages lying wholly inside `[from, to)` of `map` (read from `file`
    /// at `offset`) by a private map of the same bytes of the file: the memory goes back, and a
    /// later read faults the bytes in from the file. Only where the file offsets are
    /// page-aligned with the addresses (always, unless the model sits unaligned in a bundle).
    pub(super) fn map_back(map: &Mmap, file: &File, offset: u64, from: usize, to: usize) -> bool {
        let Some((lo, hi)) = whole_pages(map, from, to) else {
            return false;
        };
        let at = offset + (lo - map.as_ptr() as usize) as u64;
        if at % page_size() as u64 != 0 {
            return false;
        }
        let Ok(at) = libc::off_t::try_from(at) else {
            return false;
        };
        // SAFETY: [lo, hi) lies inside this process's own read-only map, and MAP_FIXED puts
        // there the very bytes it holds (read from this file, which nobody rewrites while the
        // model is open: see map_file), so no reference into it sees a change. The whole range
        // is still unmapped by `map`'s drop.
        let p = unsafe {
            libc::mmap(
                lo as *mut libc::c_void,
                hi - lo,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_FIXED,
                file.as_raw_fd(),
                at,
            )
        };
        p != libc::MAP_FAILED
    }
}
