//! Per-vCPU statistics (FreeBSD `vmm_stat`), read with VM_STATS and named
//! by VM_STAT_DESC. The descriptions are FreeBSD's, so `bhyvectl
//! --get-stats` output reads the same; the set is what this VMM can
//! count, and the indexes are this library's (FreeBSD's depend on its
//! link order). A released index never moves. The arrays and every
//! scalar after `NestedFault` (the local APIC's, then the memory
//! statistics) are new in the unreleased 0.2.0, so scalars were added
//! after the last scalar, before the arrays; once 0.2.0 is released, a
//! new statistic goes at the end.
//!
//! Array statistics (FreeBSD `VMM_STAT_ARRAY`) take one index per element
//! and are described as `vmm_stat_desc_copy` does, `"desc[i]"`. They follow
//! the scalars, and the IPI array comes last, so that sizing it to a
//! larger vCPU count later would move no other index.
//!
//! Some values are not counted here but read when the statistics are
//! (FreeBSD's `VMM_STAT_FUNC`, which `vmm_stat_copy` calls before
//! copying): the vlapic's ([`LapicCounts`]) and the VM's memory
//! ([`MemCounts`]).
//!
//! Only the thread that holds a vCPU (RUNNING or FROZEN) counts into it,
//! so a counter is bumped with a plain load and store, not a locked
//! read-modify-write: the exit path stays as cheap as without statistics.
//! Readers (VM_STATS takes no vCPU lock, as in FreeBSD) may see a count
//! one step behind. These atomics synchronise nothing, so they are std's
//! even under loom.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter per statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Stat {
    /// Every return from the guest (VMEXIT_COUNT).
    VmExits,
    /// The guest was kicked out by a notification (FreeBSD: the IPI's
    /// external-interrupt exit).
    ExtIntExits,
    Hlt,
    Pause,
    /// Monitor-trap exits (VM_CAP_MTRAP_EXIT).
    Mtrap,
    /// Exits for guest exceptions (INT3 with VM_CAP_BPT_EXIT, the
    /// single-step #DB with VM_CAP_RFLAGS_TF).
    Exception,
    InOut,
    /// RDMSR and WRMSR, inside (the local APIC's) or to userland.
    Rdmsr,
    Wrmsr,
    /// MMIO: the accesses FreeBSD decodes and emulates.
    InstEmul,
    /// VM_RUN returned to its caller.
    Userspace,
    Rendezvous,
    ReqIdle,
    Nmis,
    /// ExtINTs injected (the 8259's vectors; VCPU_EXTINT_COUNT).
    ExtInts,
    /// Time asleep in HLT: counted in nanoseconds, reported in
    /// milliseconds (FreeBSD counts `hz` ticks, 1 ms by default).
    IdleTicks,
    /// APIC timer interrupts (VLAPIC_INTR_TIMER): kept by the vlapic, read
    /// from it at copy time.
    LapicTimer,
    // Added later: at the end, so that no earlier index moves.
    /// CPUID, answered in the run loop.
    Cpuid,
    /// Guest accesses a memory map refused (VM_RUN fails with EFAULT).
    NestedFault,
    /// EOIs with nothing in service (VLAPIC_GRATUITOUS_EOI): kept by the
    /// vlapic.
    GratuitousEoi,
    /// Error LVT interrupts an APIC error raised (VLAPIC_INTR_ERROR): kept
    /// by the vlapic.
    LapicError,
    /// VLAPIC_INTR_CMC: FreeBSD 14 counts it only in `vlapic_fire_cmci`,
    /// which nothing calls, so it stays 0 there and here.
    LapicCmc,
    /// "Resident memory" (VMM_MEM_RESIDENT): bytes of guest memory in host
    /// RAM, read at copy time, for vCPU 0 only (FreeBSD `vm_get_rescnt`).
    MemResident,
    /// "Wired memory" (VMM_MEM_WIRED): bytes of guest memory wired, read
    /// at copy time, for vCPU 0 only (FreeBSD `vm_get_wiredcnt`).
    MemWired,
}

/// Elements of "lvts triggered" (LVTS_TRIGGERRED): one per LVT index,
/// `VLAPIC_MAXLVT_INDEX + 1`.
pub const LVT_ELEMS: usize = crate::vlapic::regs::lvt::COUNT;
/// Elements of "ipis sent to vcpu" (IPIS_SENT): FreeBSD 14 sizes it to
/// `VM_MAXCPU` (later `hw.vmm.maxcpu`), our default maxcpus. An IPI to a
/// higher vCPU is not counted, as `vmm_stat_array_incr` drops an index
/// past the array.
pub const IPI_ELEMS: usize = crate::vm::DEFAULT_MAXCPUS;
/// Index of `"lvts triggered[0]"`: fired by VM_LAPIC_LOCAL_IRQ, kept by the
/// vlapic.
pub const LVTS_TRIGGERED: usize = Stat::MemWired as usize + 1;
/// Index of `"ipis sent to vcpu[0]"`: fixed IPIs this vCPU sent, by
/// destination.
pub const IPIS_SENT: usize = LVTS_TRIGGERED + LVT_ELEMS;

/// The counts a vCPU's local APIC keeps (it may be raised by threads that
/// do not hold the vCPU: the callout thread, VM_LAPIC_LOCAL_IRQ callers),
/// read at copy time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LapicCounts {
    pub timer: u64,
    pub error: u64,
    pub gratuitous_eoi: u64,
    pub lvts: [u64; LVT_ELEMS],
}

/// The VM-wide memory statistics, in bytes, read at copy time. FreeBSD
/// sets them for vCPU 0 only (`vm_get_rescnt`, `vm_get_wiredcnt`: "these
/// are global stats"); every other vCPU reads 0, [`MemCounts::default`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemCounts {
    pub resident: u64,
    pub wired: u64,
}

/// FreeBSD's description of each statistic, with its number of elements,
/// in index order.
pub const TYPES: [(&str, usize); NTYPES] = [
    ("total number of vm exits", 1),
    ("vm exits due to external interrupt", 1),
    ("number of times hlt was intercepted", 1),
    ("number of times pause was intercepted", 1),
    ("number of monitor trap exits", 1),
    ("number of vm exits due to exceptions", 1),
    ("number of times in/out was intercepted", 1),
    ("number of times rdmsr was intercepted", 1),
    ("number of times wrmsr was intercepted", 1),
    ("vm exits for instruction emulation", 1),
    ("number of vm exits handled in userspace", 1),
    ("number of times rendezvous pending at exit", 1),
    ("number of times idle requested at exit", 1),
    ("number of NMIs delivered to vcpu", 1),
    ("number of ExtINTs delivered to vcpu", 1),
    ("number of ticks vcpu was idle", 1),
    ("timer interrupts generated by vlapic", 1),
    ("number of times cpuid was intercepted", 1),
    ("vm exits due to nested page fault", 1),
    ("EOI without any in-service interrupt", 1),
    ("error interrupts generated by vlapic", 1),
    ("corrected machine check interrupts generated by vlapic", 1),
    ("Resident memory", 1),
    ("Wired memory", 1),
    ("lvts triggered", LVT_ELEMS),
    ("ipis sent to vcpu", IPI_ELEMS),
];

/// Number of statistic types (an array is one).
const NTYPES: usize = Stat::MemWired as usize + 3;

/// Number of statistics (an array's elements each count).
pub const NSTATS: usize = IPIS_SENT + IPI_ELEMS;

// FreeBSD's table holds fewer than MAX_VMM_STAT_ELEMS (64) elements, and
// the C test expects them in one VM_STATS call (MAX_VM_STATS, 64): 24
// scalars, 7 LVTs and 16 IPI destinations make 47.
const _: () = assert!(NSTATS < 64);

/// One vCPU's counters.
#[derive(Debug)]
pub struct VcpuStats([AtomicU64; NSTATS]);

// By hand: std derives Default for arrays of at most 32.
impl Default for VcpuStats {
    fn default() -> Self {
        VcpuStats(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl VcpuStats {
    /// Adds `n` to `stat`. Only the thread holding the vCPU may call it.
    #[inline]
    pub fn add(&self, stat: Stat, n: u64) {
        self.bump(stat as usize, n);
    }

    /// Counts a fixed IPI to vCPU `dest` (dropped past the array, as
    /// FreeBSD). Only the thread holding the vCPU (the sender) may call it.
    #[inline]
    pub fn add_ipi_sent(&self, dest: usize) {
        if dest < IPI_ELEMS {
            self.bump(IPIS_SENT + dest, 1);
        }
    }

    /// A plain load and store: only the vCPU's holder writes.
    #[inline]
    fn bump(&self, index: usize, n: u64) {
        let c = &self.0[index];
        c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize].load(Ordering::Relaxed)
    }

    /// `vmm_stat_copy`: the statistics from `index` on, at most `max`,
    /// with `lapic`'s for those the vlapic keeps and `mem`'s for the
    /// memory statistics. EINVAL-worthy (`None`)
    /// for a negative index; an index past the end gives `Err(())`
    /// (ENOENT), one at the end an empty list.
    pub fn copy_from(
        &self,
        index: i32,
        max: usize,
        lapic: &LapicCounts,
        mem: &MemCounts,
    ) -> Option<Result<Vec<u64>, ()>> {
        let index = usize::try_from(index).ok()?;
        if index > NSTATS {
            return Some(Err(()));
        }
        let value = |i: usize| match i {
            i if i == Stat::IdleTicks as usize => self.0[i].load(Ordering::Relaxed) / 1_000_000,
            i if i == Stat::LapicTimer as usize => lapic.timer,
            i if i == Stat::GratuitousEoi as usize => lapic.gratuitous_eoi,
            i if i == Stat::LapicError as usize => lapic.error,
            i if i == Stat::MemResident as usize => mem.resident,
            i if i == Stat::MemWired as usize => mem.wired,
            i if (LVTS_TRIGGERED..IPIS_SENT).contains(&i) => lapic.lvts[i - LVTS_TRIGGERED],
            i => self.0[i].load(Ordering::Relaxed),
        };
        Some(Ok((index..NSTATS).take(max).map(value).collect()))
    }

    /// Zeroes every counter (VM_REINIT, FreeBSD `vmm_stat_init`), with the
    /// vCPU held by the caller.
    pub fn reset(&self) {
        for c in &self.0 {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// `vmm_stat_desc_copy`: the description of statistic `index`, an array
/// element's as `"desc[i]"`.
pub fn description(index: i32) -> Option<Cow<'static, str>> {
    let mut i = usize::try_from(index).ok()?;
    for (desc, nelems) in TYPES {
        if i < nelems {
            return Some(if nelems > 1 { Cow::Owned(format!("{desc}[{i}]")) } else { Cow::Borrowed(desc) });
        }
        i -= nelems;
    }
    None
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_copies_and_describes() {
        let s = VcpuStats::default();
        s.add(Stat::Hlt, 2);
        s.add(Stat::VmExits, 1);
        assert_eq!(s.get(Stat::Hlt), 2);
        s.add(Stat::IdleTicks, 2_500_000);
        let lapic = LapicCounts { timer: 7, ..LapicCounts::default() };
        let all = s.copy_from(0, 64, &lapic, &MemCounts::default()).unwrap().unwrap();
        assert_eq!(all.len(), NSTATS);
        assert_eq!((all[0], all[Stat::Hlt as usize]), (1, 2));
        assert_eq!(all[Stat::IdleTicks as usize], 2, "milliseconds");
        assert_eq!(all[Stat::LapicTimer as usize], 7);
        let none = LapicCounts::default();
        assert_eq!(s.copy_from(2, 1, &none, &MemCounts::default()).unwrap().unwrap(), vec![2]);
        assert_eq!(s.copy_from(NSTATS as i32, 64, &none, &MemCounts::default()).unwrap().unwrap(), Vec::<u64>::new());
        assert_eq!(s.copy_from(NSTATS as i32 + 1, 64, &none, &MemCounts::default()).unwrap(), Err(()));
        assert_eq!(s.copy_from(-1, 64, &none, &MemCounts::default()), None);
        s.reset();
        assert_eq!(s.get(Stat::Hlt), 0);
        assert_eq!(description(0).as_deref(), Some("total number of vm exits"));
        assert_eq!(description(Stat::LapicTimer as i32).as_deref(), Some("timer interrupts generated by vlapic"));
        assert_eq!(description(Stat::NestedFault as i32).as_deref(), Some("vm exits due to nested page fault"));
        assert_eq!(description(NSTATS as i32), None);
        assert_eq!(description(-1), None);
        assert!(TYPES.iter().all(|(d, _)| d.len() + 5 < 128), "fits vm_stat_desc.desc");
        assert_eq!(TYPES.iter().map(|t| t.1).sum::<usize>(), NSTATS);
    }

    /// FreeBSD 14's VMM_STAT_FUNCs of vmm.c: read at copy time (from
    /// `MemCounts`, nothing counted into the vCPU), after the vlapic's
    /// scalars and before the arrays.
    #[test]
    fn memory_statistics() {
        let d = |i: usize| description(i as i32).unwrap().into_owned();
        assert_eq!(d(Stat::MemResident as usize), "Resident memory");
        assert_eq!(d(Stat::MemWired as usize), "Wired memory");
        assert_eq!(Stat::MemResident as usize, Stat::LapicCmc as usize + 1);
        assert_eq!((LVTS_TRIGGERED, IPIS_SENT, NSTATS), (Stat::MemWired as usize + 1, 31, 47));
        let s = VcpuStats::default();
        let mem = MemCounts { resident: 5 << 12, wired: 2 << 12 };
        let all = s.copy_from(0, 64, &LapicCounts::default(), &mem).unwrap().unwrap();
        assert_eq!((all[Stat::MemResident as usize], all[Stat::MemWired as usize]), (5 << 12, 2 << 12));
        assert_eq!(all.iter().sum::<u64>(), 7 << 12, "nothing else");
        let one = s.copy_from(Stat::MemWired as i32, 1, &LapicCounts::default(), &mem).unwrap().unwrap();
        assert_eq!(one, vec![2 << 12]);
    }

    /// The vlapic's statistics (FreeBSD 14's vlapic.c): the scalars, then
    /// the arrays as `vmm_stat_desc_copy` names them, "%s[%d]", one index
    /// per element; the IPI array, counted by the sender, comes last.
    #[test]
    fn vlapic_statistics_and_arrays() {
        let d = |i: usize| description(i as i32).unwrap().into_owned();
        assert_eq!(d(Stat::GratuitousEoi as usize), "EOI without any in-service interrupt");
        assert_eq!(d(Stat::LapicError as usize), "error interrupts generated by vlapic");
        assert_eq!(d(Stat::LapicCmc as usize), "corrected machine check interrupts generated by vlapic");
        assert_eq!(d(LVTS_TRIGGERED), "lvts triggered[0]");
        assert_eq!(d(LVTS_TRIGGERED + 6), "lvts triggered[6]");
        assert_eq!((LVT_ELEMS, IPI_ELEMS), (7, 16));
        assert_eq!(d(IPIS_SENT), "ipis sent to vcpu[0]");
        assert_eq!(d(NSTATS - 1), "ipis sent to vcpu[15]");

        let s = VcpuStats::default();
        s.add_ipi_sent(1);
        s.add_ipi_sent(1);
        s.add_ipi_sent(IPI_ELEMS); // past the array: dropped
        let mut lvts = [0; LVT_ELEMS];
        lvts[2] = 3;
        let lapic = LapicCounts { timer: 1, error: 4, gratuitous_eoi: 5, lvts };
        let all = s.copy_from(0, 64, &lapic, &MemCounts::default()).unwrap().unwrap();
        assert_eq!(all[IPIS_SENT + 1], 2);
        assert_eq!(all[IPIS_SENT..].iter().sum::<u64>(), 2);
        assert_eq!(all[LVTS_TRIGGERED..IPIS_SENT], lvts);
        assert_eq!((all[Stat::LapicError as usize], all[Stat::GratuitousEoi as usize]), (4, 5));
        assert_eq!(all[Stat::LapicCmc as usize], 0);
        s.reset();
        assert_eq!(s.copy_from(0, 64, &lapic, &MemCounts::default()).unwrap().unwrap()[IPIS_SENT + 1], 0);
    }
}
