#[cfg(target_os = "linux")]
use super::tests::{can_wire, peek};
use super::tests::{map, two_segs, GIB, MIB, P, P64};
use super::*;

// ---------------------------------------------------------------
// libvmmapi
// ---------------------------------------------------------------

#[test]
fn setup_memory_below_limit() {
    let mut m = GuestMemory::new();
    assert!(m.map_gpa(0, 1).is_none());
    assert!(m.guestmem_base().is_none());
    m.setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
    assert_eq!((m.lowmem_size(), m.highmem_size()), (16 * MIB, 0));
    assert_eq!(
        m.get_memseg(VM_SYSMEM).unwrap(),
        MemSegInfo {
            len: 16 * MIB,
            sysmem: true,
            name: vec![]
        }
    );
    assert_eq!(
        m.memmaps(),
        vec![map(0, VM_SYSMEM, 0, 16 * MIB, PROT_ALL, 0)]
    );
    assert_eq!(m.sysmem_maxaddr(), 16 * MIB as u64);
    let base = m.guestmem_base().unwrap();
    assert_eq!(base, m.segment_host_addr(VM_SYSMEM).unwrap());
    // vm_map_gpa bounds.
    assert_eq!(m.map_gpa(0, 16 * MIB), Some(base));
    let last = m.map_gpa(16 * MIB as u64 - 1, 1).unwrap();
    assert_eq!(
        last.as_ptr() as usize,
        base.as_ptr() as usize + 16 * MIB - 1
    );
    assert!(m.map_gpa(16 * MIB as u64, 0).is_none());
    assert!(m.map_gpa(16 * MIB as u64 - 1, 2).is_none());
    assert!(m.map_gpa(0, 16 * MIB + 1).is_none());
    assert!(m.map_gpa(VM_HIGHMEM_BASE, 1).is_none());
    assert!(m.map_gpa(u64::MAX, 2).is_none());
    assert_eq!(
        m.map_gpa(0x1234, 0).unwrap().as_ptr() as usize,
        base.as_ptr() as usize + 0x1234
    );
    // vm_map_gpa agrees with the guest view.
    m.write_gpa(0x2000, b"guest").unwrap();
    assert_eq!(m.map_gpa(0x2000, 5), m.host_addr(0x2000, 5, PROT_ALL).ok());
    #[cfg(target_os = "linux")]
    assert_eq!(
        peek(m.map_gpa(0x2000, 5).unwrap().as_ptr() as usize, 5).unwrap(),
        b"guest"
    );
    // vm_rev_map_gpa, with its one-past-the-end quirk.
    let b = base.as_ptr() as usize;
    assert_eq!(m.rev_map_gpa(b + 0x2000), Some(0x2000));
    assert_eq!(m.rev_map_gpa(b + 16 * MIB), Some(16 * MIB as u64));
    assert_eq!(m.rev_map_gpa(b + 16 * MIB + 1), None);
    assert_eq!(m.rev_map_gpa(b - 1), None);
}

#[test]
fn setup_memory_exactly_at_limit() {
    let mut m = GuestMemory::new();
    m.setup_memory(3 * GIB, VM_MMAP_ALL).unwrap();
    assert_eq!((m.lowmem_size(), m.highmem_size()), (3 * GIB, 0));
    assert_eq!(m.get_memseg(0).unwrap().len, 3 * GIB);
    assert_eq!(m.memmaps(), vec![map(0, 0, 0, 3 * GIB, PROT_ALL, 0)]);
}

#[test]
fn setup_memory_above_limit() {
    let mut m = GuestMemory::new();
    let memsize = 3 * GIB + 2 * MIB;
    m.setup_memory(memsize, VM_MMAP_ALL).unwrap();
    assert_eq!((m.lowmem_size(), m.highmem_size()), (3 * GIB, 2 * MIB));
    // The segment spans the hole: 4 GiB + highmem, offsets = gpa.
    assert_eq!(m.get_memseg(0).unwrap().len, 4 * GIB + 2 * MIB);
    assert_eq!(
        m.memmaps(),
        vec![
            map(0, 0, 0, 3 * GIB, PROT_ALL, 0),
            map(VM_HIGHMEM_BASE, 0, VM_HIGHMEM_BASE, 2 * MIB, PROT_ALL, 0),
        ]
    );
    assert_eq!(m.sysmem_maxaddr(), VM_HIGHMEM_BASE + 2 * MIB as u64);
    let base = m.guestmem_base().unwrap().as_ptr() as usize;
    let hi = m.map_gpa(VM_HIGHMEM_BASE, 2 * MIB).unwrap();
    assert_eq!(hi.as_ptr() as usize, base + 4 * GIB);
    assert!(m.map_gpa(VM_HIGHMEM_BASE, 2 * MIB + 1).is_none());
    assert!(m.map_gpa(VM_HIGHMEM_BASE + 2 * MIB as u64, 1).is_none());
    assert!(m.map_gpa(VM_HIGHMEM_BASE + 2 * MIB as u64, 0).is_none(), "the end of highmem, as lowmem's");
    // The hole between 3 GiB and 4 GiB is neither mapped nor reachable.
    assert!(m.map_gpa(3 << 30, 1).is_none());
    assert!(m.map_gpa((3 << 30) - 1, 2).is_none());
    assert!(m.map_gpa(VM_HIGHMEM_BASE - 1, 1).is_none());
    assert!(!m.mem_allocated(3 << 30));
    assert_eq!(m.read_gpa(3 << 30, &mut [0u8; 1]), Err(Error::Fault));
    m.write_gpa(VM_HIGHMEM_BASE + 8, b"high").unwrap();
    assert_eq!(
        m.host_addr(VM_HIGHMEM_BASE + 8, 4, PROT_READ).ok(),
        m.map_gpa(VM_HIGHMEM_BASE + 8, 4)
    );
    assert_eq!(m.rev_map_gpa(base + 4 * GIB + 8), Some(VM_HIGHMEM_BASE + 8));
    assert_eq!(m.rev_map_gpa(base + 4 * GIB + 2 * MIB), None);
    assert_eq!(m.rev_map_gpa(base + (3 * GIB + 5)), None, "hole");
    assert_eq!(
        m.rev_map_gpa(base + 3 * GIB),
        Some(3 << 30),
        "one past lowmem (quirk)"
    );
}

#[test]
fn setup_memory_large() {
    // 16 GiB of guest RAM: a 17 GiB segment, committed only when touched.
    let mut m = GuestMemory::new();
    m.setup_memory(16 * GIB, VM_MMAP_ALL).unwrap();
    assert_eq!((m.lowmem_size(), m.highmem_size()), (3 * GIB, 13 * GIB));
    assert_eq!(m.get_memseg(0).unwrap().len, 17 * GIB);
    let top = VM_HIGHMEM_BASE + 13 * GIB as u64;
    m.write_gpa(top - 4, b"last").unwrap();
    let mut buf = [0u8; 4];
    m.read_gpa(top - 4, &mut buf).unwrap();
    assert_eq!(&buf, b"last");
    assert!(m.map_gpa(top - 4, 4).is_some());
    assert!(m.map_gpa(top - 4, 5).is_none());
}

#[test]
fn setup_memory_rejects() {
    let mut m = GuestMemory::new();
    for style in [VM_MMAP_NONE, VM_MMAP_SPARSE, 3, -1] {
        assert_eq!(m.setup_memory(16 * MIB, style), Err(Error::Inval));
    }
    assert_eq!(m.setup_memory(0, VM_MMAP_ALL), Err(Error::Inval));
    assert_eq!(m.setup_memory(16 * MIB + 1, VM_MMAP_ALL), Err(Error::Inval));
    assert_eq!(m.setup_memory(3 * GIB + 1, VM_MMAP_ALL), Err(Error::Inval));
    assert_eq!(m.setup_memory(usize::MAX, VM_MMAP_ALL), Err(Error::Inval));
    assert_eq!(m.get_memseg(0).unwrap().len, 0);
    assert!(m.memmaps().is_empty());
    assert!(m.map_gpa(0, 1).is_none());
    // Nothing is recorded by a failed call (libvmmapi records sizes).
    assert_eq!((m.lowmem_size(), m.highmem_size()), (0, 0));
}

#[test]
fn setup_memory_is_idempotent_for_the_same_size() {
    let mut m = GuestMemory::new();
    m.setup_memory(64 * MIB, VM_MMAP_ALL).unwrap();
    m.write_gpa(0, b"boot").unwrap();
    // bhyveload then bhyve: the second call finds segment and map.
    m.setup_memory(64 * MIB, VM_MMAP_ALL).unwrap();
    assert_eq!(m.memmaps().len(), 1);
    let mut buf = [0u8; 4];
    m.read_gpa(0, &mut buf).unwrap();
    assert_eq!(&buf, b"boot");
    // A different size does not fit the existing segment.
    assert_eq!(m.setup_memory(32 * MIB, VM_MMAP_ALL), Err(Error::Inval));
}

#[test]
fn setup_memory_existing_map_must_match() {
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 16 * MIB, None).unwrap();
    m.mmap_memseg(0, 0, 0, 16 * MIB, PROT_READ | PROT_WRITE, 0)
        .unwrap();
    assert_eq!(m.setup_memory(16 * MIB, VM_MMAP_ALL), Err(Error::Exist));
    // A matching map of another length is accepted (length not compared).
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 16 * MIB, None).unwrap();
    m.mmap_memseg(0, 0, 0, 8 * MIB, PROT_ALL, 0).unwrap();
    m.setup_memory(16 * MIB, VM_MMAP_ALL).unwrap();
    assert_eq!(m.memmaps(), vec![map(0, 0, 0, 8 * MIB, PROT_ALL, 0)]);
    // Segment 0 taken by devmem: not the sysmem segment it wants.
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, 16 * MIB, Some(b"x")).unwrap();
    assert_eq!(m.setup_memory(16 * MIB, VM_MMAP_ALL), Err(Error::Inval));
}

#[test]
fn setup_memory_lowmem_limit_and_wired() {
    #[cfg(target_os = "linux")]
    if !can_wire(16 << 20) {
        return;
    }
    let mut m = GuestMemory::new();
    assert_eq!(m.lowmem_limit(), 3 << 30);
    // Small sizes: wired maps lock their host memory.
    m.set_lowmem_limit(2 << 20);
    m.set_memflags(VM_MEM_F_WIRED | VM_MEM_F_INCORE);
    assert_eq!(m.memflags(), VM_MEM_F_WIRED | VM_MEM_F_INCORE);
    m.setup_memory(2 * MIB + 4 * MIB, VM_MMAP_ALL).unwrap();
    assert_eq!((m.lowmem_size(), m.highmem_size()), (2 * MIB, 4 * MIB));
    assert_eq!(m.get_memseg(0).unwrap().len, 4 * GIB + 4 * MIB);
    assert_eq!(
        m.memmaps(),
        vec![
            map(0, 0, 0, 2 * MIB, PROT_ALL, VM_MEMMAP_F_WIRED),
            map(
                VM_HIGHMEM_BASE,
                0,
                VM_HIGHMEM_BASE,
                4 * MIB,
                PROT_ALL,
                VM_MEMMAP_F_WIRED
            ),
        ]
    );
    assert!(m.map_gpa(2 * MIB as u64, 1).is_none());
    // With the wired flag off, the existing (wired) maps no longer match.
    m.set_memflags(0);
    assert_eq!(
        m.setup_memory(2 * MIB + 4 * MIB, VM_MMAP_ALL),
        Err(Error::Exist)
    );
}

#[test]
fn vmmapi_alloc_memseg_is_idempotent() {
    let mut m = GuestMemory::new();
    m.vmmapi_alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
    m.vmmapi_alloc_memseg(1, 4 * P, Some(b"rom")).unwrap();
    assert_eq!(
        m.vmmapi_alloc_memseg(1, 8 * P, Some(b"rom")),
        Err(Error::Inval)
    );
    assert_eq!(
        m.vmmapi_alloc_memseg(1, 4 * P, Some(b"other")),
        Err(Error::Inval)
    );
    assert_eq!(m.vmmapi_alloc_memseg(1, 4 * P, None), Err(Error::Inval));
    m.vmmapi_alloc_memseg(0, 4 * P, None).unwrap();
    // An empty name is a name: it matches no segment.
    assert_eq!(m.vmmapi_alloc_memseg(0, 4 * P, Some(b"")), Err(Error::Inval));
    // The segment comes before the name's length: a bad id and an
    // existing segment are `Inval`, a free one `NameTooLong`.
    let long = [b'x'; VM_MAX_SUFFIXLEN + 1];
    assert_eq!(m.vmmapi_alloc_memseg(4, 4 * P, Some(&long)), Err(Error::Inval));
    assert_eq!(m.vmmapi_alloc_memseg(1, 4 * P, Some(&long)), Err(Error::Inval));
    assert_eq!(m.vmmapi_alloc_memseg(2, 4 * P, Some(&long)), Err(Error::NameTooLong));
    assert_eq!(
        m.vmmapi_alloc_memseg(0, 4 * P, Some(b"rom")),
        Err(Error::Inval)
    );
    assert_eq!(m.vmmapi_alloc_memseg(4, 4 * P, None), Err(Error::Inval));
    assert_eq!(m.vmmapi_alloc_memseg(2, 0, None), Err(Error::Inval));
}

#[test]
fn vmmapi_mmap_memseg_checks_existing_map() {
    let mut m = two_segs();
    m.vmmapi_mmap_memseg(0, 0, 0, 4 * P, PROT_ALL).unwrap();
    m.vmmapi_mmap_memseg(0, 0, 0, 4 * P, PROT_ALL).unwrap();
    m.vmmapi_mmap_memseg(0, 0, 0, 2 * P, PROT_ALL).unwrap();
    assert_eq!(
        m.vmmapi_mmap_memseg(0, 1, 0, 4 * P, PROT_ALL),
        Err(Error::Exist)
    );
    assert_eq!(
        m.vmmapi_mmap_memseg(0, 0, P64, 4 * P, PROT_ALL),
        Err(Error::Exist)
    );
    assert_eq!(
        m.vmmapi_mmap_memseg(0, 0, 0, 4 * P, PROT_READ),
        Err(Error::Exist)
    );
    // A map at a higher address is not "the same map": kernel rules.
    assert_eq!(
        m.vmmapi_mmap_memseg(2 * P64, 0, 0, 4 * P, PROT_ALL),
        Err(Error::Fault)
    );
    m.vmmapi_mmap_memseg(4 * P64, 1, 0, 4 * P, PROT_ALL)
        .unwrap();
    assert_eq!(m.memmaps().len(), 2);
}

#[test]
fn create_devmem() {
    let mut m = GuestMemory::new();
    assert_eq!(m.create_devmem(VM_BOOTROM, b"", 4 * P), Err(Error::Inval));
    let p = m.create_devmem(VM_BOOTROM, b"bootrom", 4 * P).unwrap();
    assert_eq!(p, m.segment_host_addr(VM_BOOTROM).unwrap());
    assert_eq!(m.create_devmem(VM_BOOTROM, b"bootrom", 4 * P), Ok(p));
    assert_eq!(
        m.create_devmem(VM_BOOTROM, b"bootrom", 8 * P),
        Err(Error::Inval)
    );
    assert_eq!(
        m.create_devmem(VM_FRAMEBUFFER, b"bootrom", 4 * P),
        Err(Error::Exist)
    );
    let info = m.get_memseg(VM_BOOTROM).unwrap();
    assert!(!info.sysmem);
    assert_eq!(info.name, b"bootrom");
}

#[test]
fn sysmem_maxaddr_ignores_devmem() {
    let mut m = two_segs();
    assert_eq!(m.sysmem_maxaddr(), 0);
    m.mmap_memseg(0x10_0000, 0, 0, 4 * P, PROT_ALL, 0).unwrap();
    m.mmap_memseg(0xf000_0000, 1, 0, 4 * P, PROT_ALL, 0)
        .unwrap();
    assert_eq!(m.sysmem_maxaddr(), 0x10_0000 + 4 * P64);
}
