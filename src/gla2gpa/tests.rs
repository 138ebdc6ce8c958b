use super::*;
use crate::error::Error;
use crate::mem::{PROT_ALL, PROT_READ};

const MIB: u64 = 1 << 20;

/// 64 MiB of guest RAM at 0, page tables built in it by the test.
fn memory() -> GuestMemory {
    let mut m = GuestMemory::new();
    m.alloc_memseg(0, (64 * MIB) as usize, None).unwrap();
    m.mmap_memseg(0, 0, 0, (64 * MIB) as usize, PROT_ALL, 0).unwrap();
    m
}

fn put64(m: &GuestMemory, gpa: u64, v: u64) {
    m.write_gpa(gpa, &v.to_le_bytes()).unwrap();
}

fn put32(m: &GuestMemory, gpa: u64, v: u32) {
    m.write_gpa(gpa, &v.to_le_bytes()).unwrap();
}

fn get64(m: &GuestMemory, gpa: u64) -> u64 {
    m.read_pte(gpa, 8).unwrap()
}

const PML4: u64 = 0x1000;
const PDPT: u64 = 0x2000;
const PD: u64 = 0x3000;
const PT: u64 = 0x4000;
/// A user address: PML4 index 255, PDPT 511, PD 3, PT 5, offset 0x678.
const GLA: u64 = 0x0000_7fff_c060_5678;

fn paging64(cpl: i32) -> GuestPaging {
    GuestPaging { cr3: PML4, cpl, cpu_mode: CPU_MODE_64BIT, paging_mode: PAGING_MODE_64 }
}

/// Four levels down to a 4 KiB page at 8 MiB, every level user and
/// writable unless `leaf` says otherwise.
fn four_levels(m: &GuestMemory, leaf: u64) {
    put64(m, PML4 + 255 * 8, PDPT | PG_V | PG_RW | PG_U);
    put64(m, PDPT + 511 * 8, PD | PG_V | PG_RW | PG_U);
    put64(m, PD + 3 * 8, PT | PG_V | PG_RW | PG_U);
    put64(m, PT + 5 * 8, (8 * MIB) | leaf);
}

#[test]
fn flat_is_the_identity() {
    let m = memory();
    let p = GuestPaging { cr3: 0, cpl: 0, cpu_mode: 1, paging_mode: PAGING_MODE_FLAT };
    assert_eq!(gla2gpa(&m, &p, 0x1234_5678_9abc, PROT_READ, false), Ok(Ok(0x1234_5678_9abc)));
}

#[test]
fn four_level_walk_sets_accessed_and_dirty_bits() {
    let m = memory();
    four_levels(&m, PG_V | PG_RW | PG_U);
    // Checking only: translated, nothing written.
    assert_eq!(gla2gpa(&m, &paging64(3), GLA, PROT_READ, true), Ok(Ok(8 * MIB + 0x678)));
    assert_eq!(get64(&m, PT + 5 * 8) & (PG_A | PG_M), 0);
    // A read sets A at every level; a write also sets D on the leaf.
    assert_eq!(gla2gpa(&m, &paging64(3), GLA, PROT_READ, false), Ok(Ok(8 * MIB + 0x678)));
    for e in [PML4 + 255 * 8, PDPT + 511 * 8, PD + 3 * 8, PT + 5 * 8] {
        assert_eq!(get64(&m, e) & (PG_A | PG_M), PG_A, "entry at {e:#x}");
    }
    assert_eq!(gla2gpa(&m, &paging64(0), GLA, PROT_WRITE, false), Ok(Ok(8 * MIB + 0x678)));
    assert_eq!(get64(&m, PT + 5 * 8) & PG_M, PG_M);
    assert_eq!(get64(&m, PD + 3 * 8) & PG_M, 0, "D only on the leaf");
}

#[test]
fn large_pages() {
    let m = memory();
    put64(&m, PML4 + 255 * 8, PDPT | PG_V | PG_RW);
    put64(&m, PDPT + 511 * 8, PD | PG_V | PG_RW);
    // 2 MiB page at 32 MiB.
    put64(&m, PD + 3 * 8, (32 * MIB) | PG_V | PG_RW | PG_PS);
    assert_eq!(gla2gpa(&m, &paging64(0), GLA, PROT_READ, true), Ok(Ok(32 * MIB + (GLA & 0x1f_ffff))));
    // 1 GiB page at 1 GiB (beyond guest RAM: only the tables must be RAM).
    put64(&m, PDPT + 511 * 8, (1 << 30) | PG_V | PG_RW | PG_PS | (1 << 63));
    assert_eq!(gla2gpa(&m, &paging64(0), GLA, PROT_READ, true), Ok(Ok((1 << 30) + (GLA & 0x3fff_ffff))));
    // PS in the PML4 is reserved.
    put64(&m, PML4 + 255 * 8, PDPT | PG_V | PG_RW | PG_PS);
    assert_eq!(
        gla2gpa(&m, &paging64(0), GLA, PROT_READ, true),
        Ok(Err(GuestFault::PageFault(PGEX_P | PGEX_RSV)))
    );
}

#[test]
fn protection_faults_carry_freebsds_error_codes() {
    let m = memory();
    four_levels(&m, PG_V); // supervisor, read-only leaf
    let walk = |cpl, prot| gla2gpa(&m, &paging64(cpl), GLA, prot, true);
    assert_eq!(walk(0, PROT_READ), Ok(Ok(8 * MIB + 0x678)));
    assert_eq!(walk(3, PROT_READ), Ok(Err(GuestFault::PageFault(PGEX_P | PGEX_U))));
    // Only CPL 3 is a user access (FreeBSD: `usermode = cpl == 3`).
    assert_eq!(walk(1, PROT_READ), Ok(Ok(8 * MIB + 0x678)), "CPL 1 is supervisor");
    assert_eq!(walk(2, PROT_READ), Ok(Ok(8 * MIB + 0x678)), "CPL 2 is supervisor");
    assert_eq!(walk(0, PROT_WRITE), Ok(Err(GuestFault::PageFault(PGEX_P | PGEX_W))), "as CR0.WP=1");
    assert_eq!(walk(0, PROT_EXEC), Ok(Ok(8 * MIB + 0x678)), "no NX check");
    put64(&m, PT + 5 * 8, 0);
    assert_eq!(walk(3, PROT_WRITE | PROT_EXEC), Ok(Err(GuestFault::PageFault(PGEX_W | PGEX_U | PGEX_I))));
    // A faulting walk that is not check-only leaves the levels above
    // marked accessed, as FreeBSD.
    assert_eq!(gla2gpa(&m, &paging64(0), GLA, PROT_READ, false), Ok(Err(GuestFault::PageFault(0))));
    assert_eq!(get64(&m, PD + 3 * 8) & PG_A, PG_A);
}

#[test]
fn non_canonical_addresses_are_gp_in_64_bit_mode_only() {
    let m = memory();
    four_levels(&m, PG_V | PG_RW | PG_U);
    let bad = 0x0000_8000_0000_0000;
    assert_eq!(gla2gpa(&m, &paging64(0), bad, PROT_READ, true), Ok(Err(GuestFault::GeneralProtection)));
    let mut compat = paging64(0);
    compat.cpu_mode = 2;
    assert!(matches!(gla2gpa(&m, &compat, bad, PROT_READ, true), Ok(Err(GuestFault::PageFault(_)))));
    // 48-bit canonical also with 5-level paging.
    let la57 = GuestPaging { paging_mode: PAGING_MODE_64_LA57, ..paging64(0) };
    assert_eq!(gla2gpa(&m, &la57, bad, PROT_READ, true), Ok(Err(GuestFault::GeneralProtection)));
}

#[test]
fn five_levels() {
    let m = memory();
    // PML5 at 0x5000, index 0 -> the four-level tables.
    put64(&m, 0x5000, PML4 | PG_V | PG_RW | PG_U);
    four_levels(&m, PG_V | PG_RW | PG_U);
    let p = GuestPaging { cr3: 0x5000, paging_mode: PAGING_MODE_64_LA57, ..paging64(3) };
    assert_eq!(gla2gpa(&m, &p, GLA, PROT_READ, true), Ok(Ok(8 * MIB + 0x678)));
}

#[test]
fn thirty_two_bit_and_pae_walks() {
    let m = memory();
    // 32-bit: PD at 0x6000; gla 0x0040_1abc -> PDE 1 -> PT at 0x7000, PTE 1.
    put32(&m, 0x6000 + 4, 0x7000 | (PG_V | PG_RW) as u32);
    put32(&m, 0x7000 + 4, 0x0090_0000 | (PG_V | PG_RW) as u32);
    let p32 = GuestPaging { cr3: 0x6000, cpl: 0, cpu_mode: 1, paging_mode: PAGING_MODE_32 };
    assert_eq!(gla2gpa(&m, &p32, 0x0040_1abc, PROT_WRITE, false), Ok(Ok(0x0090_0abc)));
    assert_eq!(m.read_pte(0x7004, 4).unwrap() & (PG_A | PG_M), PG_A | PG_M);
    // Only CR3's low 32 bits name the page directory.
    let high = GuestPaging { cr3: (1 << 32) | 0x6000, ..p32 };
    assert_eq!(gla2gpa(&m, &high, 0x0040_1abc, PROT_READ, true), Ok(Ok(0x0090_0abc)), "CR3 bits 63:32");
    // A 4 MiB page (PDE 2, PS), CR4.PSE not consulted.
    put32(&m, 0x6000 + 8, 0x0140_0000 | (PG_V | PG_PS) as u32);
    assert_eq!(gla2gpa(&m, &p32, 0x0081_2345, PROT_READ, true), Ok(Ok(0x0141_2345)));
    // PAE: PDPT at 0x8020 (32-byte aligned); entry 1 -> PD at 0x9000.
    put64(&m, 0x8020 + 8, 0x9000 | PG_V);
    put64(&m, 0x9000 + 8 * 2, 0xa000 | PG_V | PG_RW);
    put64(&m, 0xa000 + 8 * 3, 0x00b0_0000 | PG_V | PG_RW);
    let pae = GuestPaging { cr3: 0x8020, cpl: 0, cpu_mode: 1, paging_mode: PAGING_MODE_PAE };
    let gla = (1 << 30) | (2 << 21) | (3 << 12) | 0x42;
    assert_eq!(gla2gpa(&m, &pae, gla, PROT_READ, true), Ok(Ok(0x00b0_0042)));
    assert_eq!(
        gla2gpa(&m, &pae, 2 << 30, PROT_READ, true),
        Ok(Err(GuestFault::PageFault(0))),
        "PDPTE 2 not present"
    );
}

/// PAE: address bits 31:30 pick one of the four PDPTEs, so the top
/// gigabyte goes through entry 3, not entry 1; a PDPTE's present bit is
/// looked at.
#[test]
fn pae_addresses_pick_their_pdpte_with_bits_31_and_30() {
    let m = memory();
    put64(&m, 0x8000 + 8, 0x9000 | PG_V);
    put64(&m, 0x8000 + 8 * 3, 0xc000 | PG_V);
    put64(&m, 0x9000, 0xa000 | PG_V);
    put64(&m, 0xc000, 0xd000 | PG_V);
    put64(&m, 0xa000, 0x00b0_0000 | PG_V);
    put64(&m, 0xd000, 0x00e0_0000 | PG_V);
    let pae = GuestPaging { cr3: 0x8000, cpl: 0, cpu_mode: 1, paging_mode: PAGING_MODE_PAE };
    assert_eq!(gla2gpa(&m, &pae, (1 << 30) | 0x42, PROT_READ, true), Ok(Ok(0x00b0_0042)));
    assert_eq!(gla2gpa(&m, &pae, (3 << 30) | 0x42, PROT_READ, true), Ok(Ok(0x00e0_0042)));
    // A PDPTE without its present bit faults, whatever frame it names.
    put64(&m, 0x8000 + 8 * 2, 0x9000);
    assert_eq!(gla2gpa(&m, &pae, (2 << 30) | 0x42, PROT_READ, true), Ok(Err(GuestFault::PageFault(0))));
}

#[test]
fn page_tables_outside_guest_ram_are_efault() {
    let m = memory();
    let p = GuestPaging { cr3: 128 * MIB, ..paging64(0) };
    assert_eq!(gla2gpa(&m, &p, GLA, PROT_READ, true), Err(Error::Fault));
    // A read-only map is not good enough for page tables (FreeBSD holds
    // them read-write).
    let mut ro = GuestMemory::new();
    ro.alloc_memseg(0, MIB as usize, None).unwrap();
    ro.mmap_memseg(0, 0, 0, MIB as usize, PROT_READ, 0).unwrap();
    assert_eq!(gla2gpa(&ro, &paging64(0), GLA, PROT_READ, true), Err(Error::Fault));
}

/// The faulting form queues #PF with CR2, or #GP(0) for a non-canonical
/// address; with an exception already queued, neither the #PF nor its
/// CR2 is taken (FreeBSD: a KASSERT).
#[test]
fn a_fault_is_queued_with_cr2_unless_an_exception_is_pending() {
    use crate::regs::reg;
    let vm = crate::vm::Vm::with_idle_backend("t", 1).unwrap();
    {
        let all = vm.lock_all().unwrap();
        vm.mem_write(&all).unwrap().setup_memory((16 * MIB) as usize, crate::mem::VM_MMAP_ALL).unwrap();
    }
    let l = vm.lock_one(0).unwrap();
    l.vcpu().regs.lock().set(reg::CR0 as i32, 0x8000_0001).unwrap();
    let p = paging64(0); // PML4 at 0x1000 is all zeros: not present
    assert_eq!(vm.gla2gpa(&l, &p, GLA, PROT_READ, true), Ok(None));
    assert_eq!(l.vcpu().regs.lock().intinfo(), (0, 0), "NOFAULT queues nothing");
    assert_eq!(vm.gla2gpa(&l, &p, GLA, PROT_WRITE, false), Ok(None));
    let (_, info) = l.vcpu().regs.lock().intinfo();
    assert_eq!((info & 0xff, info >> 32), (14, u64::from(PGEX_W)));
    assert_eq!(l.vcpu().regs.lock().get(reg::CR2 as i32), Ok(GLA));
    // Another fault with the #PF still queued: CR2 stays.
    assert_eq!(vm.gla2gpa(&l, &p, GLA + 0x1000, PROT_READ, false), Ok(None));
    assert_eq!(l.vcpu().regs.lock().get(reg::CR2 as i32), Ok(GLA));
    // A non-canonical address queues #GP(0), CR2 untouched.
    let _ = l.vcpu().regs.lock().entry_intinfo();
    assert_eq!(vm.gla2gpa(&l, &p, 0x0000_8000_0000_0000, PROT_READ, false), Ok(None));
    let (_, info) = l.vcpu().regs.lock().intinfo();
    assert_eq!((info & 0xff, info & crate::regs::intinfo::DEL_ERRCODE != 0, info >> 32), (13, true, 0), "#GP(0)");
    assert_eq!(l.vcpu().regs.lock().get(reg::CR2 as i32), Ok(GLA));
}
