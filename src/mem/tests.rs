use super::*;

pub(super) const MIB: usize = 1 << 20;
pub(super) const GIB: usize = 1 << 30;
pub(super) const P: usize = PAGE_SIZE;
pub(super) const P64: u64 = PAGE_SIZE as u64;

/// Memory with segment 0 (sysmem) and 1 (devmem "dev"), 16 pages each.
pub(super) fn two_segs() -> GuestMemory {
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 16 * P, None).unwrap();
    m.alloc_memseg(1, 16 * P, Some(b"dev")).unwrap();
    m
}

pub(super) fn map(gpa: u64, segid: i32, segoff: u64, len: usize, prot: u32, flags: u32) -> MemMap {
    MemMap {
        gpa,
        segid,
        segoff,
        len,
        prot,
        flags,
    }
}

/// Whether some mapping of this process covers `addr` (/proc/self/maps).
#[cfg(target_os = "linux")]
fn is_mapped(addr: usize) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let a = usize::from_str_radix(a, 16).unwrap();
        let b = usize::from_str_radix(b, 16).unwrap();
        a <= addr && addr < b
    })
}

/// Reads this process's memory at `addr` through /proc/self/mem (safe,
/// and fails with an error if the address is not mapped).
#[cfg(target_os = "linux")]
pub(super) fn peek(addr: usize, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open("/proc/self/mem")?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, addr as u64)?;
    Ok(buf)
}

/// Writes this process's memory at `addr` through /proc/self/mem.
#[cfg(target_os = "linux")]
fn poke(addr: usize, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open("/proc/self/mem").unwrap();
    f.write_all_at(bytes, addr as u64).unwrap();
}

/// Marks memory that is about to be released: `assert_released` then
/// tells our mapping from one another thread's mmap put at the same
/// address meanwhile (which reads zeros, or its own data).
#[cfg(target_os = "linux")]
const MARKER: &[u8; 8] = b"vmm_rs\x01\x02";

/// Whether the read-write mapping of a segment, exactly
/// `[start, start + len)`, is in /proc/self/maps. Its guards (another
/// protection) keep the kernel from merging it with a neighbour, and
/// each test gives its segment a size of its own, so no other mapping
/// has this exact range.
#[cfg(target_os = "linux")]
fn segment_mapped(start: usize, len: usize) -> bool {
    let range = format!("{:x}-{:x} rw", start, start + len);
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().any(|l| l.starts_with(&range))
}

/// Whether the host pages `[start, start + len)` are locked: `Some`
/// of the answer when every mapping the range overlaps in
/// /proc/self/smaps agrees (VmFlags `lo`, which mlock sets on exactly
/// the locked range), `None` when part is locked and part is not.
#[cfg(target_os = "linux")]
fn host_locked(start: usize, len: usize) -> Option<bool> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut seen = Vec::new();
    let mut overlapping = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                overlapping = a < start + len && start < b;
                continue;
            }
        }
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if overlapping {
                seen.push(flags.split_whitespace().any(|f| f == "lo"));
            }
        }
    }
    assert!(!seen.is_empty(), "{start:#x}+{len:#x} is not mapped");
    let first = seen[0];
    seen.iter().all(|l| *l == first).then_some(first)
}

/// Lets this process lock `need` bytes: raises RLIMIT_MEMLOCK's soft
/// limit to its hard one. False (after saying why) where even that is
/// too little for a thread without CAP_IPC_LOCK: the
/// wired tests cannot run there.
#[cfg(target_os = "linux")]
pub(crate) fn can_wire(need: u64) -> bool {
    // CAP_IPC_LOCK in this thread's effective set (root usually has
    // it; a container's root may not) lifts RLIMIT_MEMLOCK.
    fn has_ipc_lock() -> bool {
        const CAP_IPC_LOCK: u32 = 14;
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
        let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).map(str::trim);
        eff.and_then(|h| u64::from_str_radix(h, 16).ok()).is_some_and(|c| c >> CAP_IPC_LOCK & 1 == 1)
    }
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap();
    setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).unwrap();
    let ok = hard >= need || has_ipc_lock();
    if !ok {
        eprintln!("skipped: RLIMIT_MEMLOCK hard limit {hard} is below the {need} bytes this test wires");
    }
    ok
}

#[cfg(target_os = "linux")]
#[test]
fn wired_maps_lock_their_host_pages_until_the_last_one_goes() {
    if !can_wire(16 << 20) {
        return;
    }
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 24 * P, None).unwrap();
    let host = m.segment_host_addr(0).unwrap().as_ptr() as usize;
    let pages = |first: usize, n: usize| host_locked(host + first * P, n * P);
    // Pages 2..8 mapped twice, wired (at two guest addresses);
    // pages 12..16 mapped, not wired.
    m.mmap_memseg(0, 0, 2 * P64, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
    m.mmap_memseg(1 << 20, 0, 4 * P64, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
    m.mmap_memseg(2 << 20, 0, 12 * P64, 4 * P, PROT_ALL, 0).unwrap();
    assert_eq!((pages(0, 2), pages(2, 8), pages(10, 14)), (Some(false), Some(true), Some(false)));
    // Unmapping the first keeps what the second still wires.
    m.munmap_memseg(0, 6 * P).unwrap();
    assert_eq!((pages(0, 4), pages(4, 6), pages(10, 14)), (Some(false), Some(true), Some(false)));
    m.munmap_memseg(1 << 20, 6 * P).unwrap();
    m.munmap_memseg(2 << 20, 4 * P).unwrap();
    assert_eq!(pages(0, 24), Some(false));
}

#[cfg(target_os = "linux")]
#[test]
fn reinit_unwires_device_memory_and_destroy_releases_wired_pages() {
    if !can_wire(16 << 20) {
        return;
    }
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 26 * P, None).unwrap();
    m.alloc_memseg(1, 6 * P, Some(b"fb")).unwrap();
    m.mmap_memseg(0, 0, 0, 26 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
    m.mmap_memseg(1 << 30, 1, 0, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
    let sys = m.segment_host_addr(0).unwrap().as_ptr() as usize;
    let dev = m.segment_host_addr(1).unwrap().as_ptr() as usize;
    assert_eq!((host_locked(sys, 26 * P), host_locked(dev, 6 * P)), (Some(true), Some(true)));
    m.reinit();
    assert_eq!((host_locked(sys, 26 * P), host_locked(dev, 6 * P)), (Some(true), Some(false)));
    m.write_gpa(5, b"x").unwrap();
    // Locked pages cannot be dropped: release unwires them first.
    m.release_host_memory();
    assert_eq!(host_locked(sys, 26 * P), Some(false));
    let mut b = [1u8];
    m.read_gpa(5, &mut b).unwrap();
    assert_eq!(b, [0]);
}

/// "Resident memory": the segments' pages in host RAM, each segment
/// counted once however many maps alias it, device memory too.
#[test]
fn resident_bytes_count_touched_pages_of_every_segment_once() {
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 40 * P, None).unwrap();
    m.alloc_memseg(1, 8 * P, Some(b"rom")).unwrap();
    assert_eq!(m.resident_bytes(), 0, "nothing touched yet");
    // Segment 0 mapped twice (aliases), segment 1 once.
    m.mmap_memseg(0, 0, 0, 40 * P, PROT_ALL, 0).unwrap();
    m.mmap_memseg(1 << 20, 0, 0, 40 * P, PROT_ALL, 0).unwrap();
    m.mmap_memseg(1 << 30, 1, 0, 8 * P, PROT_ALL, 0).unwrap();
    for page in 0..10u64 {
        m.write_gpa(page * P64, &[1]).unwrap();
        m.write_gpa((1 << 20) + page * P64, &[2]).unwrap(); // the same pages
    }
    m.write_gpa(1 << 30, &[3]).unwrap();
    let r = m.resident_bytes();
    assert!(r >= 11 * P64, "{r}");
    assert!(r <= 48 * P64, "{r}: at most the segments' sizes");
    // Written through the host mapping, unmapped: still the guest's.
    m.munmap_memseg(1 << 30, 8 * P).unwrap();
    assert!(m.resident_bytes() >= 11 * P64);
    m.release_host_memory();
    assert_eq!(m.resident_bytes(), 0, "given back to the host");
}

/// "Wired memory": what the wired maps cover, each byte once.
#[cfg(target_os = "linux")]
#[test]
fn wired_bytes_count_each_wired_byte_once() {
    if !can_wire(16 << 20) {
        return;
    }
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 28 * P, None).unwrap();
    m.alloc_memseg(1, 4 * P, Some(b"fb")).unwrap();
    assert_eq!(m.wired_bytes(), 0);
    // Pages 2..8 and 4..10 of segment 0 (8 pages wired), 12..16 not.
    m.mmap_memseg(0, 0, 2 * P64, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
    m.mmap_memseg(1 << 20, 0, 4 * P64, 6 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
    m.mmap_memseg(2 << 20, 0, 12 * P64, 4 * P, PROT_ALL, 0).unwrap();
    assert_eq!(m.wired_bytes(), 8 * P64);
    m.mmap_memseg(1 << 30, 1, 0, 4 * P, PROT_ALL, VM_MEMMAP_F_WIRED).unwrap();
    assert_eq!(m.wired_bytes(), 12 * P64);
    assert!(m.resident_bytes() >= 12 * P64, "wired pages are resident");
    m.munmap_memseg(0, 6 * P).unwrap();
    assert_eq!(m.wired_bytes(), 10 * P64);
    m.reinit(); // device memory's maps go
    assert_eq!(m.wired_bytes(), 6 * P64);
}

/// The segment mapping `[start, start + len)` that held `MARKER` at
/// `probe` is gone: its exact range is no longer mapped, and `probe`
/// is unmapped or mapped afresh by someone else (zeros or their data).
#[cfg(target_os = "linux")]
fn assert_released(start: usize, len: usize, probe: usize, what: &str) {
    assert!(!segment_mapped(start, len), "{what}");
    if let Ok(now) = peek(probe, MARKER.len()) {
        assert_ne!(now, MARKER, "{what}");
    }
}

#[test]
fn constants_match_freebsd() {
    assert_eq!(VM_MAX_MEMSEGS, 4);
    assert_eq!(VM_MAX_MEMMAPS, 8);
    assert_eq!(VM_MAX_SUFFIXLEN, 15);
    assert_eq!((VM_MEMMAP_F_WIRED, VM_MEMMAP_F_IOMMU), (1, 2));
    assert_eq!((VM_MEM_F_INCORE, VM_MEM_F_WIRED), (1, 2));
    assert_eq!(
        (VM_SYSMEM, VM_BOOTROM, VM_FRAMEBUFFER, VM_PCIROM),
        (0, 1, 2, 3)
    );
    assert_eq!((VM_MMAP_NONE, VM_MMAP_ALL, VM_MMAP_SPARSE), (0, 1, 2));
    assert_eq!(VM_LOWMEM_LIMIT, 0xc000_0000);
    assert_eq!(VM_HIGHMEM_BASE, 0x1_0000_0000);
    assert_eq!(VM_MAXUSER_ADDRESS_LA48, 0x8000_0000_0000);
    assert_eq!((PROT_READ, PROT_WRITE, PROT_EXEC, PROT_ALL), (1, 2, 4, 7));
}

// ---------------------------------------------------------------
// alloc_memseg / get_memseg
// ---------------------------------------------------------------

#[test]
fn alloc_sysmem_and_devmem() {
    let m = two_segs();
    assert_eq!(
        m.get_memseg(0).unwrap(),
        MemSegInfo {
            len: 16 * P,
            sysmem: true,
            name: vec![]
        }
    );
    assert_eq!(
        m.get_memseg(1).unwrap(),
        MemSegInfo {
            len: 16 * P,
            sysmem: false,
            name: b"dev".to_vec()
        }
    );
}

#[test]
fn alloc_every_id_and_empty_name_is_sysmem() {
    let mut m = GuestMemory::new();
    for id in 0..VM_MAX_MEMSEGS as i32 {
        m.alloc_memseg(id, P * (id as usize + 1), Some(b""))
            .unwrap();
        let info = m.get_memseg(id).unwrap();
        assert_eq!(info.len, P * (id as usize + 1));
        assert!(info.sysmem);
        assert!(info.name.is_empty());
    }
}

#[test]
fn alloc_bad_id() {
    let mut m = GuestMemory::new();
    for id in [-1, VM_MAX_MEMSEGS as i32, i32::MIN, i32::MAX] {
        assert_eq!(m.alloc_memseg(id, P, None), Err(Error::Inval));
    }
}

#[test]
fn alloc_bad_len() {
    let mut m = GuestMemory::new();
    for len in [0, 1, P - 1, P + 1, 2 * P + 512] {
        assert_eq!(m.alloc_memseg(0, len, None), Err(Error::Inval), "len {len}");
    }
    assert_eq!(m.get_memseg(0).unwrap().len, 0);
}

#[test]
fn alloc_existing_same_is_eexist_else_einval() {
    let mut m = two_segs();
    assert_eq!(m.alloc_memseg(0, 16 * P, None), Err(Error::Exist));
    assert_eq!(m.alloc_memseg(0, 8 * P, None), Err(Error::Inval));
    assert_eq!(m.alloc_memseg(0, 16 * P, Some(b"x")), Err(Error::Inval));
    // Devmem: vm_alloc_memseg compares length and kind only, not names.
    assert_eq!(m.alloc_memseg(1, 16 * P, Some(b"dev")), Err(Error::Exist));
    assert_eq!(m.alloc_memseg(1, 16 * P, Some(b"other")), Err(Error::Exist));
    assert_eq!(m.alloc_memseg(1, 16 * P, None), Err(Error::Inval));
    assert_eq!(m.alloc_memseg(1, 32 * P, Some(b"dev")), Err(Error::Inval));
    // Bad length is reported before "exists", and before a devmem name
    // that clashes (FreeBSD checks the length first, devfs last).
    assert_eq!(m.alloc_memseg(0, 0, None), Err(Error::Inval));
    assert_eq!(m.alloc_memseg(2, 0, Some(b"dev")), Err(Error::Inval));
    assert_eq!(m.get_memseg(1).unwrap().name, b"dev");
}

#[test]
fn alloc_name_length() {
    let mut m = GuestMemory::new();
    let long = [b'a'; VM_MAX_SUFFIXLEN + 1];
    assert_eq!(m.alloc_memseg(1, P, Some(&long)), Err(Error::Inval));
    assert_eq!(m.alloc_memseg(1, P, Some(b"a\0b")), Err(Error::Inval));
    assert_eq!(m.get_memseg(1).unwrap().len, 0);
    let max = [b'a'; VM_MAX_SUFFIXLEN];
    m.alloc_memseg(1, P, Some(&max)).unwrap();
    assert_eq!(m.get_memseg(1).unwrap().name, max);
}

#[test]
fn alloc_devfs_name_rules() {
    let mut m = GuestMemory::new();
    for bad in [
        &b"a b"[..],
        b"a\tb",
        b"a\nb",
        b"a\rb",
        b"\x0b",
        b"\x0c",
        b"q\"",
        b"a/",
        b"a//",
        b"/",
        b"a/.",
        b"a/..",
        b"a/./b",
        b"a/../b",
    ] {
        assert_eq!(
            m.alloc_memseg(1, P, Some(bad)),
            Err(Error::Inval),
            "{bad:?}"
        );
        assert_eq!(m.get_memseg(1).unwrap().len, 0);
    }
    // The first component is glued to "<vm>.", so these are fine.
    for (id, good) in [(1, &b"."[..]), (2, b".."), (3, b"..x/y")] {
        m.alloc_memseg(id, P, Some(good)).unwrap();
    }
    // ...but "./x" lies below ".".
    assert_eq!(m.alloc_memseg(0, P, Some(b"./x")), Err(Error::Exist));
    GuestMemory::new().alloc_memseg(0, P, Some(b"./x")).unwrap();
}

#[test]
fn alloc_devmem_name_collisions() {
    let mut m = GuestMemory::new();
    m.alloc_memseg(1, P, Some(b"fb")).unwrap();
    for clash in [&b"fb"[..], b"fb/x", b"fb//x"] {
        assert_eq!(
            m.alloc_memseg(2, P, Some(clash)),
            Err(Error::Exist),
            "{clash:?}"
        );
        assert_eq!(m.get_memseg(2).unwrap().len, 0, "segment freed again");
    }
    m.alloc_memseg(2, P, Some(b"fb2")).unwrap();
    m.alloc_memseg(3, P, Some(b"d//e")).unwrap();
    let mut m2 = GuestMemory::new();
    m2.alloc_memseg(1, P, Some(b"d/e/f")).unwrap();
    assert_eq!(m2.alloc_memseg(2, P, Some(b"d/e")), Err(Error::Exist));
    assert_eq!(m2.alloc_memseg(2, P, Some(b"d")), Err(Error::Exist));
    // The other way round, with slash runs collapsed.
    assert_eq!(m.alloc_memseg(0, P, Some(b"d/e/g")), Err(Error::Exist));
    assert_eq!(m.alloc_memseg(0, P, Some(b"d/e")), Err(Error::Exist));
    // Sysmem segments have no name and never clash.
    m.alloc_memseg(0, P, None).unwrap();
    // Not even with a name whose first component is empty ("<vm>./x"
    // in devfs): an empty name is no directory of "/x".
    let mut m3 = GuestMemory::new();
    m3.alloc_memseg(0, P, None).unwrap();
    m3.alloc_memseg(1, P, Some(b"/x")).unwrap();
}

#[test]
fn alloc_huge_is_enomem() {
    let mut m = GuestMemory::new();
    let huge = usize::MAX & !(P - 1);
    assert_eq!(m.alloc_memseg(0, huge, None), Err(Error::NoMem));
    assert_eq!(m.alloc_memseg(0, 1 << 62, None), Err(Error::NoMem));
    assert_eq!(m.get_memseg(0).unwrap().len, 0);
}

#[test]
fn get_memseg_unallocated_and_bad_id() {
    let m = GuestMemory::new();
    for id in 0..VM_MAX_MEMSEGS as i32 {
        assert_eq!(m.get_memseg(id).unwrap(), MemSegInfo::default());
    }
    assert_eq!(m.get_memseg(-1), Err(Error::Inval));
    assert_eq!(m.get_memseg(VM_MAX_MEMSEGS as i32), Err(Error::Inval));
}

// ---------------------------------------------------------------
// mmap_memseg
// ---------------------------------------------------------------

#[test]
fn mmap_success_is_reported_by_getnext() {
    let mut m = two_segs();
    m.mmap_memseg(
        0x10_0000,
        0,
        4 * P64,
        8 * P,
        PROT_READ | PROT_WRITE,
        VM_MEMMAP_F_WIRED,
    )
    .unwrap();
    assert_eq!(
        m.mmap_getnext(0).unwrap(),
        map(
            0x10_0000,
            0,
            4 * P64,
            8 * P,
            PROT_READ | PROT_WRITE,
            VM_MEMMAP_F_WIRED
        )
    );
    assert!(m.mem_allocated(0x10_0000));
    assert!(m.mem_allocated(0x10_0000 + 8 * P64 - 1));
    assert!(!m.mem_allocated(0x10_0000 + 8 * P64));
    assert!(!m.mem_allocated(0x10_0000 - 1));
}

#[test]
fn mmap_prot_rules() {
    let mut m = two_segs();
    for bad in [0, 8, PROT_ALL | 8, 0x100, u32::MAX] {
        assert_eq!(
            m.mmap_memseg(0, 0, 0, P, bad, 0),
            Err(Error::Inval),
            "prot {bad:#x}"
        );
    }
    // Every nonzero subset of PROT_ALL is accepted, read or not.
    for (i, prot) in (1..=PROT_ALL).enumerate() {
        let gpa = i as u64 * P64;
        m.mmap_memseg(gpa, 0, gpa, P, prot, 0).unwrap();
        assert_eq!(m.mmap_getnext(gpa).unwrap().prot, prot);
    }
}

#[test]
fn mmap_flag_rules() {
    let mut m = two_segs();
    for bad in [
        VM_MEMMAP_F_IOMMU,
        VM_MEMMAP_F_WIRED | VM_MEMMAP_F_IOMMU,
        4,
        u32::MAX,
    ] {
        assert_eq!(
            m.mmap_memseg(0, 0, 0, P, PROT_ALL, bad),
            Err(Error::Inval),
            "flags {bad:#x}"
        );
    }
    m.mmap_memseg(0, 0, 0, P, PROT_ALL, 0).unwrap();
    m.mmap_memseg(P64, 0, 0, P, PROT_ALL, VM_MEMMAP_F_WIRED)
        .unwrap();
    assert_eq!(m.mmap_getnext(0).unwrap().flags, 0);
    assert_eq!(m.mmap_getnext(1).unwrap().flags, VM_MEMMAP_F_WIRED);
}

#[test]
fn mmap_segment_must_exist() {
    let mut m = two_segs();
    for segid in [-1, 2, 3, 4, i32::MAX] {
        assert_eq!(
            m.mmap_memseg(0, segid, 0, P, PROT_ALL, 0),
            Err(Error::Inval),
            "segid {segid}"
        );
    }
    m.mmap_memseg(0, 1, 0, P, PROT_ALL, 0).unwrap();
}

#[test]
fn mmap_range_in_segment() {
    let mut m = two_segs();
    let seglen = 16 * P64;
    for (segoff, len) in [
        (0, 0),
        (0, 17 * P),
        (P64, 16 * P),
        (seglen, P),
        (seglen, 0),
        (32 * P64, P),
        (u64::MAX - (P64 - 1), P), // segoff + len wraps
        (1 << 63, P),              // negative vm_ooffset_t
        (0, usize::MAX - (P - 1)), // len huge
    ] {
        assert_eq!(
            m.mmap_memseg(0, 0, segoff, len, PROT_ALL, 0),
            Err(Error::Inval),
            "{segoff:#x}+{len:#x}"
        );
    }
    m.mmap_memseg(0, 0, 0, 16 * P, PROT_ALL, 0).unwrap();
    m.mmap_memseg(1 << 30, 0, 15 * P64, P, PROT_ALL, 0).unwrap();
}

#[test]
fn mmap_alignment() {
    let mut m = two_segs();
    for (gpa, segoff, len) in [
        (1u64, 0u64, P),
        (P64 / 2, 0, P),
        (0, 1, P),
        (0, 8, P),
        (0, 0, P + 1),
        (0, 0, P - 1),
        (0, 0, 1),
        (0x1000_0800, 0, P),
    ] {
        assert_eq!(
            m.mmap_memseg(gpa, 0, segoff, len, PROT_ALL, 0),
            Err(Error::Inval),
            "{gpa:#x} {segoff:#x} {len:#x}"
        );
    }
    assert_eq!(m.mmap_getnext(0), Err(Error::NoEnt));
}

#[test]
fn mmap_slots_run_out() {
    let mut m = two_segs();
    for i in 0..VM_MAX_MEMMAPS as u64 {
        m.mmap_memseg(i * 0x10_0000, 0, 0, P, PROT_ALL, 0).unwrap();
    }
    assert_eq!(
        m.mmap_memseg(0x1000_0000, 0, 0, P, PROT_ALL, 0),
        Err(Error::NoSpc)
    );
    // ENOSPC is reported before the overlap (EFAULT) check...
    assert_eq!(m.mmap_memseg(0, 0, 0, P, PROT_ALL, 0), Err(Error::NoSpc));
    // ...but after the argument checks.
    assert_eq!(
        m.mmap_memseg(0x1000_0001, 0, 0, P, PROT_ALL, 0),
        Err(Error::Inval)
    );
    assert_eq!(
        m.mmap_memseg(0x1000_0000, 3, 0, P, PROT_ALL, 0),
        Err(Error::Inval)
    );
    // Freeing a slot makes room again.
    m.munmap_memseg(0x30_0000, P).unwrap();
    m.mmap_memseg(0x1000_0000, 0, 0, P, PROT_ALL, 0).unwrap();
    assert_eq!(m.memmaps().len(), VM_MAX_MEMMAPS);
}

#[test]
fn mmap_overlap_every_geometry_is_efault() {
    // Existing map: [16 pages, 24 pages).
    let base = 16 * P64;
    let cases: [(u64, usize, &str); 9] = [
        (base, 8 * P, "identical"),
        (base - 2 * P64, 4 * P, "overlaps start"),
        (base + 6 * P64, 4 * P, "overlaps end"),
        (base - P64, 10 * P, "contains"),
        (base + 2 * P64, 2 * P, "inside"),
        (base, 2 * P, "same start, shorter"),
        (base + 6 * P64, 2 * P, "same end, shorter"),
        (base + 7 * P64, P, "last page"),
        (base - 15 * P64, 16 * P, "first page only"),
    ];
    for (gpa, len, what) in cases {
        let mut m = two_segs();
        m.mmap_memseg(base, 0, 0, 8 * P, PROT_ALL, 0).unwrap();
        assert_eq!(
            m.mmap_memseg(gpa, 1, 0, len, PROT_ALL, 0),
            Err(Error::Fault),
            "{what}"
        );
        assert_eq!(m.memmaps().len(), 1, "{what}");
    }
    // Adjacent on both sides is fine.
    let mut m = two_segs();
    m.mmap_memseg(base, 0, 0, 8 * P, PROT_ALL, 0).unwrap();
    m.mmap_memseg(base - 4 * P64, 1, 0, 4 * P, PROT_ALL, 0)
        .unwrap();
    m.mmap_memseg(base + 8 * P64, 1, 0, 4 * P, PROT_ALL, 0)
        .unwrap();
    assert_eq!(m.memmaps().len(), 3);
}

#[test]
fn mmap_guest_address_space_limit() {
    let mut m = two_segs();
    let top = VM_MAXUSER_ADDRESS_LA48;
    assert_eq!(m.mmap_memseg(top, 0, 0, P, PROT_ALL, 0), Err(Error::Fault));
    assert_eq!(
        m.mmap_memseg(top - P64, 0, 0, 2 * P, PROT_ALL, 0),
        Err(Error::Fault)
    );
    // gpa + len wraps around 2^64.
    assert_eq!(
        m.mmap_memseg(u64::MAX - (P64 - 1), 0, 0, 2 * P, PROT_ALL, 0),
        Err(Error::Fault)
    );
    assert_eq!(
        m.mmap_memseg(u64::MAX - (P64 - 1), 0, 0, P, PROT_ALL, 0),
        Err(Error::Fault)
    );
    m.mmap_memseg(top - 2 * P64, 0, 0, 2 * P, PROT_ALL, 0)
        .unwrap();
    assert_eq!(m.sysmem_maxaddr(), top);
}

// ---------------------------------------------------------------
// munmap_memseg
// ---------------------------------------------------------------

#[test]
fn munmap_exact_match_only() {
    let mut m = two_segs();
    m.mmap_memseg(0x10_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
    for (gpa, len) in [
        (0x10_0000, 2 * P),
        (0x10_0000, 8 * P),
        (0x10_0000 + P64, 3 * P),
        (0x10_0000 + P64, P),
        (0x0f_f000, 4 * P),
        (0x20_0000, 4 * P),
        (0x10_0000, 0),
    ] {
        assert_eq!(
            m.munmap_memseg(gpa, len),
            Err(Error::Inval),
            "{gpa:#x}+{len:#x}"
        );
    }
    assert_eq!(m.memmaps().len(), 1);
    m.munmap_memseg(0x10_0000, 4 * P).unwrap();
    assert_eq!(m.mmap_getnext(0), Err(Error::NoEnt));
    assert!(!m.mem_allocated(0x10_0000));
    assert_eq!(m.munmap_memseg(0x10_0000, 4 * P), Err(Error::Inval));
    // The segment and its length survive the unmap.
    assert_eq!(m.get_memseg(0).unwrap().len, 16 * P);
}

#[test]
fn munmap_zero_zero_matches_a_free_slot() {
    let mut m = two_segs();
    assert_eq!(m.munmap_memseg(0, 0), Ok(()));
    for i in 0..VM_MAX_MEMMAPS as u64 {
        m.mmap_memseg(i * P64, 0, 0, P, PROT_ALL, 0).unwrap();
    }
    assert_eq!(m.munmap_memseg(0, 0), Err(Error::Inval));
    assert_eq!(m.memmaps().len(), VM_MAX_MEMMAPS);
}

#[test]
fn munmap_refuses_iommu_maps() {
    let mut m = two_segs();
    m.mmap_memseg(0, 0, 0, 4 * P, PROT_ALL, VM_MEMMAP_F_WIRED)
        .unwrap();
    m.mmap_memseg(1 << 20, 0, 0, 4 * P, PROT_ALL, 0).unwrap(); // not wired
    m.mmap_memseg(2 << 20, 1, 0, 4 * P, PROT_ALL, VM_MEMMAP_F_WIRED)
        .unwrap(); // devmem
    m.iommu_map();
    assert_eq!(
        m.mmap_getnext(0).unwrap().flags,
        VM_MEMMAP_F_WIRED | VM_MEMMAP_F_IOMMU
    );
    assert_eq!(m.mmap_getnext(1 << 20).unwrap().flags, 0);
    assert_eq!(m.mmap_getnext(2 << 20).unwrap().flags, VM_MEMMAP_F_WIRED);
    assert_eq!(m.munmap_memseg(0, 4 * P), Err(Error::Inval));
    m.munmap_memseg(1 << 20, 4 * P).unwrap();
    m.munmap_memseg(2 << 20, 4 * P).unwrap();
    m.iommu_unmap();
    assert_eq!(m.mmap_getnext(0).unwrap().flags, VM_MEMMAP_F_WIRED);
    m.munmap_memseg(0, 4 * P).unwrap();
}

// ---------------------------------------------------------------
// mmap_getnext
// ---------------------------------------------------------------

#[test]
fn getnext_walks_in_gpa_order() {
    let mut m = two_segs();
    let gpas = [
        0x50_0000u64,
        0x1000,
        0x8000_0000,
        0x30_0000,
        0x1_0000_0000,
        0,
    ];
    for (i, &gpa) in gpas.iter().enumerate() {
        m.mmap_memseg(gpa, (i % 2) as i32, i as u64 * P64, P, PROT_ALL, 0)
            .unwrap();
    }
    let mut seen = vec![];
    let mut gpa = 0;
    while let Ok(mm) = m.mmap_getnext(gpa) {
        seen.push(mm.gpa);
        gpa = mm.gpa + mm.len as u64;
    }
    let mut sorted = gpas.to_vec();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(
        m.memmaps().iter().map(|x| x.gpa).collect::<Vec<_>>(),
        sorted
    );
    // Per-map fields come back with the right map.
    let mm = m.mmap_getnext(0x30_0000).unwrap();
    assert_eq!((mm.segid, mm.segoff), (1, 3 * P64));
}

#[test]
fn getnext_comparison_is_start_ge_gpa() {
    let mut m = two_segs();
    m.mmap_memseg(0x10_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
    m.mmap_memseg(0x20_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
    assert_eq!(m.mmap_getnext(0x10_0000).unwrap().gpa, 0x10_0000);
    // A gpa inside the first map skips it: only the start is compared.
    assert_eq!(m.mmap_getnext(0x10_0001).unwrap().gpa, 0x20_0000);
    assert_eq!(m.mmap_getnext(0x20_0000).unwrap().gpa, 0x20_0000);
    assert_eq!(m.mmap_getnext(0x20_0001), Err(Error::NoEnt));
    assert_eq!(m.mmap_getnext(u64::MAX), Err(Error::NoEnt));
    assert_eq!(GuestMemory::new().mmap_getnext(0), Err(Error::NoEnt));
}

// ---------------------------------------------------------------
// Guest access
// ---------------------------------------------------------------

#[test]
fn read_write_round_trip_and_zero_fill() {
    let mut m = two_segs();
    m.mmap_memseg(0x10_0000, 0, 0, 16 * P, PROT_READ | PROT_WRITE, 0)
        .unwrap();
    let mut buf = [0xffu8; 64];
    m.read_gpa(0x10_0000 + 100, &mut buf).unwrap();
    assert_eq!(buf, [0u8; 64], "fresh memory reads as zero");
    let data: Vec<u8> = (0..=255u8).cycle().take(3 * P + 7).collect();
    m.write_gpa(0x10_0000 + 5, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    m.read_gpa(0x10_0000 + 5, &mut back).unwrap();
    assert_eq!(back, data);
    // Last byte of the map is reachable.
    m.write_gpa(0x10_0000 + 16 * P64 - 1, &[0xab]).unwrap();
    let mut one = [0u8];
    m.read_gpa(0x10_0000 + 16 * P64 - 1, &mut one).unwrap();
    assert_eq!(one, [0xab]);
}

#[test]
fn two_maps_of_one_segment_alias() {
    let mut m = two_segs();
    // Segment 0 pages 4..8 at 1 MiB and pages 6..10 at 2 MiB: page 6 is
    // gpa 1 MiB + 2 pages and gpa 2 MiB.
    m.mmap_memseg(1 << 20, 0, 4 * P64, 4 * P, PROT_ALL, 0)
        .unwrap();
    m.mmap_memseg(2 << 20, 0, 6 * P64, 4 * P, PROT_ALL, 0)
        .unwrap();
    m.write_gpa((1 << 20) + 2 * P64 + 10, b"alias").unwrap();
    let mut buf = [0u8; 5];
    m.read_gpa((2 << 20) + 10, &mut buf).unwrap();
    assert_eq!(&buf, b"alias");
    m.write_gpa((2 << 20) + P64, b"back").unwrap();
    let mut buf = [0u8; 4];
    m.read_gpa((1 << 20) + 3 * P64, &mut buf).unwrap();
    assert_eq!(&buf, b"back");
    assert_eq!(
        m.host_addr((1 << 20) + 2 * P64, 1, PROT_READ).unwrap(),
        m.host_addr(2 << 20, 1, PROT_READ).unwrap()
    );
    // Different segments do not alias.
    m.mmap_memseg(3 << 20, 1, 4 * P64, 4 * P, PROT_ALL, 0)
        .unwrap();
    let mut buf = [1u8; 5];
    m.read_gpa((3 << 20) + 2 * P64 + 10, &mut buf).unwrap();
    assert_eq!(buf, [0; 5]);
}

#[test]
fn data_survives_munmap_and_remap() {
    let mut m = two_segs();
    m.mmap_memseg(0, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
    m.write_gpa(P64, b"keep").unwrap();
    m.munmap_memseg(0, 4 * P).unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(m.read_gpa(P64, &mut buf), Err(Error::Fault));
    m.mmap_memseg(0x40_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
    m.read_gpa(0x40_0000 + P64, &mut buf).unwrap();
    assert_eq!(&buf, b"keep");
}

#[test]
fn access_faults() {
    let mut m = two_segs();
    m.mmap_memseg(0x10_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
    // Adjacent map of the same segment, contiguous in the segment too.
    m.mmap_memseg(0x10_0000 + 4 * P64, 0, 4 * P64, 4 * P, PROT_ALL, 0)
        .unwrap();
    m.mmap_memseg(0x20_0000, 0, 0, P, PROT_READ, 0).unwrap();
    m.mmap_memseg(0x30_0000, 0, 0, P, PROT_WRITE, 0).unwrap();
    m.mmap_memseg(0x40_0000, 0, 0, P, PROT_EXEC, 0).unwrap();
    let mut b4 = [0u8; 4];
    // Unmapped.
    assert_eq!(m.read_gpa(0, &mut b4), Err(Error::Fault));
    assert_eq!(m.write_gpa(0x10_0000 - 4, &b4), Err(Error::Fault));
    // Starts before a map.
    assert_eq!(m.read_gpa(0x10_0000 - 2, &mut b4), Err(Error::Fault));
    // Runs past the end of a map into nothing.
    assert_eq!(m.read_gpa(0x20_0000 + P64 - 2, &mut b4), Err(Error::Fault));
    // Crosses from one map into the adjacent one.
    assert_eq!(m.write_gpa(0x10_0000 + 4 * P64 - 2, &b4), Err(Error::Fault));
    assert_eq!(
        m.host_addr(0x10_0000 + 4 * P64 - 2, 4, PROT_READ),
        Err(Error::Fault)
    );
    // Each map alone is fine right up to the boundary.
    m.write_gpa(0x10_0000 + 4 * P64 - 4, &b4).unwrap();
    m.write_gpa(0x10_0000 + 4 * P64, &b4).unwrap();
    // Protection.
    m.read_gpa(0x20_0000, &mut b4).unwrap();
    assert_eq!(m.write_gpa(0x20_0000, &b4), Err(Error::Fault));
    m.write_gpa(0x30_0000, &b4).unwrap();
    assert_eq!(m.read_gpa(0x30_0000, &mut b4), Err(Error::Fault));
    assert_eq!(m.read_gpa(0x40_0000, &mut b4), Err(Error::Fault));
    assert_eq!(m.write_gpa(0x40_0000, &b4), Err(Error::Fault));
    m.host_addr(0x40_0000, 4, PROT_EXEC).unwrap();
    assert_eq!(
        m.host_addr(0x20_0000, 4, PROT_READ | PROT_WRITE),
        Err(Error::Fault)
    );
    assert_eq!(m.host_addr(0x20_0000, 4, 8), Err(Error::Inval));
    // Wrap-around.
    assert_eq!(m.read_gpa(u64::MAX - 1, &mut b4), Err(Error::Fault));
    assert_eq!(m.host_addr(0x10_0000, usize::MAX, 0), Err(Error::Fault));
    // Zero length: fine inside a map, a fault outside.
    m.read_gpa(0x10_0000, &mut []).unwrap();
    assert_eq!(m.write_gpa(0, &[]), Err(Error::Fault));
    assert_eq!(m.host_addr(0x10_0000 + 8 * P64, 0, 0), Err(Error::Fault));
}

/// A page-table entry is 4 or 8 bytes, naturally aligned: anything else
/// is Inval, not a fault of the memory it would read.
#[test]
fn pte_accesses_need_a_width_of_4_or_8_naturally_aligned() {
    let mut m = two_segs();
    m.mmap_memseg(0, 0, 0, P, PROT_READ | PROT_WRITE, 0).unwrap();
    assert_eq!(m.read_pte(8, 8), Ok(0));
    assert_eq!(m.read_pte(8, 2), Err(Error::Inval));
    assert_eq!(m.read_pte(2, 4), Err(Error::Inval));
    assert_eq!(m.read_pte(4, 8), Err(Error::Inval));
    assert_eq!(m.cmpxchg_pte(4, 8, 0, 1), Err(Error::Inval));
}

#[test]
fn host_addr_points_at_segment_memory() {
    let mut m = two_segs();
    m.mmap_memseg(0x10_0000, 1, 2 * P64, 4 * P, PROT_ALL, 0)
        .unwrap();
    let seg = m.segment_host_addr(1).unwrap().as_ptr() as usize;
    let at = m.host_addr(0x10_0000 + 123, 8, PROT_READ).unwrap().as_ptr() as usize;
    assert_eq!(at, seg + 2 * P + 123);
    assert_ne!(seg, m.segment_host_addr(0).unwrap().as_ptr() as usize);
    assert_eq!(m.segment_host_addr(2), Err(Error::Inval));
    assert_eq!(m.segment_host_addr(-1), Err(Error::Inval));
    #[cfg(target_os = "linux")]
    {
        m.write_gpa(0x10_0000 + 123, b"via host").unwrap();
        assert_eq!(peek(at, 8).unwrap(), b"via host");
        assert!(is_mapped(seg) && is_mapped(seg + 16 * P - 1));
    }
    // The address outlives the map (the segment still exists).
    m.munmap_memseg(0x10_0000, 4 * P).unwrap();
    assert_eq!(m.host_addr(0x10_0000, 1, 0), Err(Error::Fault));
    #[cfg(target_os = "linux")]
    assert_eq!(peek(at, 8).unwrap(), b"via host");
}

#[test]
fn concurrent_readers_and_writers() {
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, P, None).unwrap();
    m.mmap_memseg(0, 0, 0, P, PROT_ALL, 0).unwrap();
    let m = std::sync::Arc::new(m);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                for _ in 0..1000 {
                    m.write_gpa(u64::from(t) * 64, &[t; 64]).unwrap();
                    m.read_gpa(0, &mut buf).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut buf = [0u8; 256];
    m.read_gpa(0, &mut buf).unwrap();
    for t in 0..4 {
        assert!(buf[t * 64..(t + 1) * 64].iter().all(|&b| b == t as u8));
    }
}

// ---------------------------------------------------------------
// reinit, clear, drop
// ---------------------------------------------------------------

#[test]
fn reinit_keeps_sysmem_maps_and_all_segments() {
    let mut m = two_segs();
    m.mmap_memseg(0, 0, 0, 8 * P, PROT_ALL, 0).unwrap();
    m.mmap_memseg(1 << 20, 0, 8 * P64, 8 * P, PROT_ALL, 0)
        .unwrap();
    m.mmap_memseg(2 << 20, 1, 0, 4 * P, PROT_ALL, 0).unwrap();
    m.write_gpa(16, b"sys").unwrap();
    m.write_gpa((2 << 20) + 16, b"dev").unwrap();
    m.reinit();
    let maps = m.memmaps();
    assert_eq!(
        maps.iter().map(|x| x.gpa).collect::<Vec<_>>(),
        vec![0, 1 << 20]
    );
    assert_eq!(m.get_memseg(0).unwrap().len, 16 * P);
    assert_eq!(m.get_memseg(1).unwrap().name, b"dev");
    let mut buf = [0u8; 3];
    m.read_gpa(16, &mut buf).unwrap();
    assert_eq!(&buf, b"sys");
    // The devmem contents are still there once remapped.
    m.mmap_memseg(3 << 20, 1, 0, 4 * P, PROT_ALL, 0).unwrap();
    m.read_gpa((3 << 20) + 16, &mut buf).unwrap();
    assert_eq!(&buf, b"dev");
    // Segments survive: re-allocating is EEXIST.
    assert_eq!(m.alloc_memseg(1, 16 * P, Some(b"dev")), Err(Error::Exist));
}

/// A 64 GiB segment (never committed): after release, a page a quarter
/// of the way in cannot have been reused by anyone else's mapping, since
/// Linux places new mappings at the top of a free gap.
#[cfg(target_os = "linux")]
const BIG: usize = 64 * GIB;

/// The kernel's VmFlags for the mapping holding `addr` (smaps).
#[cfg(target_os = "linux")]
fn vm_flags(addr: usize) -> String {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for l in smaps.lines() {
        if let Some((range, _)) = l.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    inside = a <= addr && addr < b;
                    continue;
                }
            }
        }
        if inside {
            if let Some(f) = l.strip_prefix("VmFlags:") {
                return f.to_owned();
            }
        }
    }
    panic!("{addr:#x} not in smaps");
}

/// The permissions /proc/self/maps gives the mapping holding `addr`.
#[cfg(target_os = "linux")]
fn perms(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for l in maps.lines() {
        let mut f = l.split_whitespace();
        let (a, b) = f.next().unwrap().split_once('-').unwrap();
        if (usize::from_str_radix(a, 16).unwrap()..usize::from_str_radix(b, 16).unwrap()).contains(&addr) {
            return f.next().unwrap().to_owned();
        }
    }
    panic!("{addr:#x} not mapped");
}

/// Each segment sits between inaccessible guard regions (libvmmapi's
/// 4 MiB), so a device model running off guest memory faults.
#[cfg(target_os = "linux")]
#[test]
fn segments_have_guard_regions_on_both_sides() {
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 16 * P, None).unwrap();
    m.alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
    for (seg, len) in [(0, 16 * P), (1, 4 * P)] {
        let start = m.segment_host_addr(seg).unwrap().as_ptr() as usize;
        assert_eq!(&perms(start)[..2], "rw", "segment {seg}");
        assert_eq!(&perms(start + len - 1)[..2], "rw");
        for guard in [start - 1, start - host::GUARD, start + len, start + len + host::GUARD - 1] {
            assert_eq!(&perms(guard)[..3], "---", "segment {seg}: {guard:#x} is a guard");
        }
    }
}

/// Without VM_MEM_F_INCORE guest memory stays out of core dumps
/// (libvmmapi's MAP_NOCORE), system and device memory alike.
#[cfg(target_os = "linux")]
#[test]
fn guest_memory_is_left_out_of_core_dumps_unless_incore() {
    let dontdump = |p: NonNull<u8>| vm_flags(p.as_ptr() as usize).split_whitespace().any(|f| f == "dd");
    let mut m = GuestMemory::new();
    m.setup_memory(16 * P, VM_MMAP_ALL).unwrap();
    let rom = m.create_devmem(VM_BOOTROM, b"rom", 4 * P).unwrap();
    assert!(dontdump(m.guestmem_base().unwrap()) && dontdump(rom));
    // A repeat call decides again, as libvmmapi's new mmap does.
    m.set_memflags(VM_MEM_F_INCORE);
    m.setup_memory(16 * P, VM_MMAP_ALL).unwrap();
    assert!(!dontdump(m.guestmem_base().unwrap()));
    let mut m = GuestMemory::new();
    m.set_memflags(VM_MEM_F_INCORE);
    m.setup_memory(16 * P, VM_MMAP_ALL).unwrap();
    let rom = m.create_devmem(VM_BOOTROM, b"rom", 4 * P).unwrap();
    assert!(!dontdump(m.guestmem_base().unwrap()) && !dontdump(rom));
}

/// A setup whose lowmem map fails (a device map in the way) takes
/// back the segment and the highmem map it made, so that a retry with
/// another size works (libvmmapi leaves them, and the retry fails).
#[test]
fn failed_setup_memory_takes_back_what_it_made() {
    let mut m = lowmem_blocked_by_a_rom_map(None);
    assert_eq!(m.setup_memory(20 * MIB, VM_MMAP_ALL), Err(Error::Fault));
    assert_eq!(m.get_memseg(VM_SYSMEM).unwrap().len, 0);
    assert_eq!(m.memmaps().iter().map(|m| m.segid).collect::<Vec<_>>(), [1]);
    assert_eq!((m.lowmem_size(), m.highmem_size()), (0, 0));
    m.munmap_memseg(8 * MIB as u64, MIB).unwrap();
    m.setup_memory(8 * MIB, VM_MMAP_ALL).unwrap();
    assert_eq!(m.get_memseg(VM_SYSMEM).unwrap().len, 8 * MIB);
}

/// A segment or highmem map that was there before the failed call
/// stays: the call takes back only what it made.
#[test]
fn failed_setup_memory_keeps_what_was_there() {
    let objsize = VM_HIGHMEM_BASE as usize + 4 * MIB;
    let mut m = lowmem_blocked_by_a_rom_map(Some(objsize));
    m.mmap_memseg(VM_HIGHMEM_BASE, VM_SYSMEM, VM_HIGHMEM_BASE, 4 * MIB, PROT_ALL, 0).unwrap();
    assert_eq!(m.setup_memory(20 * MIB, VM_MMAP_ALL), Err(Error::Fault));
    assert_eq!(m.get_memseg(VM_SYSMEM).unwrap().len, objsize);
    assert_eq!(m.mmap_getnext(VM_HIGHMEM_BASE).unwrap().len, 4 * MIB);
    m.munmap_memseg(8 * MIB as u64, MIB).unwrap();
    m.setup_memory(20 * MIB, VM_MMAP_ALL).unwrap();
}

/// Memory (lowmem limit 16 MiB) whose setup of 20 MiB fails at its
/// lowmem map, as a device map sits at 8 MiB; with `sysmem`, segment 0
/// is already there, that long.
fn lowmem_blocked_by_a_rom_map(sysmem: Option<usize>) -> GuestMemory {
    let mut m = GuestMemory::new();
    m.set_lowmem_limit((16 * MIB) as u32);
    if let Some(len) = sysmem {
        m.alloc_memseg(VM_SYSMEM, len, None).unwrap();
    }
    m.create_devmem(1, b"rom", MIB).unwrap();
    m.mmap_memseg(8 * MIB as u64, 1, 0, MIB, PROT_READ, 0).unwrap();
    m
}

/// A failed wired setup unwires the highmem map it made in a segment
/// that was there before: the segment stays, so the map's pages would
/// otherwise stay locked with no map.
#[cfg(target_os = "linux")]
#[test]
fn failed_wired_setup_memory_unlocks_the_highmem_map_it_made() {
    if !can_wire(16 << 20) {
        return;
    }
    let mut m = lowmem_blocked_by_a_rom_map(Some(VM_HIGHMEM_BASE as usize + 4 * MIB));
    m.set_memflags(VM_MEM_F_WIRED);
    assert_eq!(m.setup_memory(20 * MIB, VM_MMAP_ALL), Err(Error::Fault));
    assert_eq!(m.memmaps().iter().map(|m| m.segid).collect::<Vec<_>>(), [1]);
    let high = m.segment_host_addr(VM_SYSMEM).unwrap().as_ptr() as usize + VM_HIGHMEM_BASE as usize;
    assert_eq!(host_locked(high, 4 * MIB), Some(false));
}

#[test]
fn uncovered_pieces() {
    let r = |kept: &[(u64, u64)]| uncovered(10, 20, kept.iter().copied());
    assert_eq!(r(&[]), [(10, 20)]);
    assert_eq!(r(&[(0, 10), (20, 30)]), [(10, 20)]);
    assert_eq!(r(&[(12, 14)]), [(10, 12), (14, 20)]);
    assert_eq!(r(&[(15, 18), (11, 16), (5, 10)]), [(10, 11), (18, 20)]);
    assert_eq!(r(&[(0, 30)]), []);
    assert_eq!(r(&[(10, 20)]), []);
    assert_eq!(r(&[(10, 12), (12, 20)]), []);
    assert_eq!(r(&[(19, 25), (8, 11)]), [(11, 19)]);
    assert_eq!(r(&[(14, 14)]), [(10, 20)]);
    // A range inside an earlier, longer one (a wired map within another
    // wired map of the segment) does not end the covered part early.
    assert_eq!(r(&[(12, 14), (10, 18)]), [(18, 20)]);
}

/// A size whose high part cannot sit above 4 GiB changes nothing (the
/// layout queries then still describe the memory there is).
#[test]
fn setup_memory_too_large_for_the_address_space_changes_nothing() {
    let mut m = GuestMemory::new();
    m.setup_memory(16 * P, VM_MMAP_ALL).unwrap();
    assert_eq!(m.setup_memory(usize::MAX, VM_MMAP_ALL), Err(Error::Inval));
    assert_eq!((m.lowmem_size(), m.highmem_size()), (16 * P, 0));
    assert!(m.map_gpa(VM_HIGHMEM_BASE, 1).is_none() && m.map_gpa(0, 1).is_some());
    assert_eq!(m.rev_map_gpa(usize::MAX), None);
}

#[cfg(target_os = "linux")]
#[test]
fn clear_releases_host_memory() {
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, BIG, None).unwrap();
    m.alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
    m.mmap_memseg(0, 0, 0, BIG, PROT_ALL, 0).unwrap();
    m.set_lowmem_limit(1 << 30);
    let start = m.segment_host_addr(0).unwrap().as_ptr() as usize;
    let probe = start + BIG / 4;
    m.write_gpa((BIG / 4) as u64, MARKER).unwrap();
    assert!(segment_mapped(start, BIG));
    assert_eq!(peek(probe, 8).unwrap(), MARKER);
    m.clear();
    assert_released(start, BIG, probe, "segment memory still mapped after clear()");
    assert_eq!(m.get_memseg(0).unwrap().len, 0);
    assert_eq!(m.get_memseg(1).unwrap().len, 0);
    assert_eq!(m.mmap_getnext(0), Err(Error::NoEnt));
    assert_eq!(m.lowmem_limit(), VM_LOWMEM_LIMIT as u32);
    // Everything can be allocated again, the devmem name included.
    m.alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
    m.alloc_memseg(0, 4 * P, None).unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn drop_releases_host_memory() {
    let mut m = GuestMemory::new();
    let len = BIG + 2 * P; // a size of its own (see segment_mapped)
    m.alloc_memseg(2, len, Some(b"big")).unwrap();
    let start = m.segment_host_addr(2).unwrap().as_ptr() as usize;
    let probe = start + BIG / 4;
    poke(probe, MARKER);
    assert!(segment_mapped(start, len));
    drop(m);
    assert_released(start, len, probe, "segment memory still mapped after drop");
}

/// A destroyed VM gives its guest memory back at once but keeps the
/// addresses mapped (a device thread may still be writing through
/// one), also after the `Vm` is dropped: for the rest of the process,
/// as FreeBSD's mapping.
// A Vm: under loom its locks work only inside a model.
#[cfg(all(target_os = "linux", not(loom)))]
#[test]
fn destroyed_vm_guest_memory_stays_mapped_for_the_process() {
    let vm = crate::vm::Vm::with_idle_backend("t", 1).unwrap();
    {
        let all = vm.lock_all().unwrap();
        vm.mem_write(&all).unwrap().setup_memory(BIG + 4 * P, VM_MMAP_ALL).unwrap();
    }
    vm.mem().write_gpa((BIG / 4) as u64, b"k").unwrap();
    let probe = vm.mem().map_gpa((BIG / 4) as u64, 1).unwrap().as_ptr() as usize;
    let start = vm.mem().segment_host_addr(VM_SYSMEM).unwrap().as_ptr() as usize;
    let len = vm.mem().get_memseg(VM_SYSMEM).unwrap().len;
    vm.destroy();
    assert_eq!(peek(probe, 1).unwrap(), b"\0", "still mapped, its page given back");
    assert!(segment_mapped(start, len), "mapped after the destroy");
    poke(probe, MARKER);
    drop(vm);
    assert!(segment_mapped(start, len), "and after the drop");
    assert_eq!(peek(probe, MARKER.len()).unwrap(), MARKER, "a late write stays readable");
}

/// VM_REINIT keeps guest RAM where it was, contents included.
// A Vm: under loom its locks work only inside a model.
#[cfg(not(loom))]
#[test]
fn reinit_keeps_the_libvmmapi_layout() {
    let vm = crate::vm::Vm::with_idle_backend("t", 1).unwrap();
    let all = vm.lock_all().unwrap();
    vm.mem_write(&all).unwrap().setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
    vm.mem_write(&all).unwrap().write_gpa(0x100, b"boot").unwrap();
    let p = vm.mem().map_gpa(0x100, 4).unwrap();
    vm.reinit(&all).unwrap();
    assert_eq!(vm.mem().map_gpa(0x100, 4), Some(p));
    let mut buf = [0u8; 4];
    vm.mem().read_gpa(0x100, &mut buf).unwrap();
    assert_eq!(&buf, b"boot");
    assert_eq!(vm.mem().lowmem_size(), 16 * MIB);
}

/// A failed repeat vm_setup_memory leaves the earlier memory in use;
/// the recorded sizes change first, as in libvmmapi, but host
/// addresses are still only handed out inside the segment.
#[test]
fn failed_repeat_setup_keeps_the_earlier_memory() {
    let mut m = GuestMemory::new();
    m.setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
    let p = m.map_gpa(0x1000, 4).unwrap();
    assert_eq!(m.setup_memory(32 * MIB, VM_MMAP_ALL), Err(Error::Inval));
    // The layout stays what is there (libvmmapi records the new sizes
    // first): the size getters and vm_rev_map_gpa agree with map_gpa.
    assert_eq!((m.lowmem_size(), m.highmem_size()), (16 * MIB, 0));
    assert_eq!(m.map_gpa(0x1000, 4), Some(p));
    assert!(m.map_gpa(16 * MIB as u64, 4).is_none(), "beyond the segment");
    let base = p.as_ptr() as usize - 0x1000;
    assert_eq!(m.rev_map_gpa(base + 20 * MIB), None);
    m.setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
    assert_eq!(m.map_gpa(0x1000, 4), Some(p));
}
