//! Interrupt delivery across the VM's local APICs: destination resolution
//! (`vlapic_calcdest`), `vlapic_deliver_intr`, `lapic_set_intr`, IPIs and
//! MSI decoding.
//!
//! Every function here takes vlapic mutexes one at a time and notifies a
//! vCPU only after its vlapic mutex is released. They may run under the
//! vioapic table mutex (which ranks above vCPU and vlapic mutexes).
//!
//! Lowest-priority delivery does no arbitration, as in FreeBSD and illumos:
//! in logical mode the lowest-numbered matching active vCPU gets the
//! interrupt; a physical destination names one vCPU anyway; a broadcast
//! goes to every active vCPU.

use crate::cpuset::CpuSet;
use crate::error::{Error, Result};
use crate::exit::ExitKind;
use crate::regs::CAP_IPI_EXIT;
use crate::vm::Vm;

use super::regs::*;
use super::Ipi;

/// An INIT or STARTUP IPI a vCPU sent, for the run loop to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartIpi {
    /// DELMODE_INIT or DELMODE_STARTUP.
    pub mode: u32,
    pub vector: u8,
    pub targets: CpuSet,
    /// The sender's VM_CAP_IPI_EXIT.
    pub ipi_exit: bool,
}

/// MSI address window (`MSI_X86_ADDR_BASE`/`_MASK`) and address bits.
const MSI_ADDR_MASK: u64 = 0xFFF0_0000;
const MSI_ADDR_BASE: u64 = 0xFEE0_0000;
const MSI_ADDR_RH: u64 = 0x8;
const MSI_ADDR_LOG: u64 = 0x4;

/// A decoded MSI (VM_LAPIC_MSI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msi {
    /// Destination id, address bits 19:12.
    pub dest: u8,
    /// Physical unless both redirection hint (bit 3) and destination mode
    /// (bit 2) are set: FreeBSD's reading. (illumos looks at bit 2 alone.)
    pub phys: bool,
    /// Delivery mode, data bits 10:8 (`DELMODE_*`).
    pub delmode: u32,
    /// Vector, data bits 7:0.
    pub vector: u8,
    /// Trigger mode, data bit 15. Decoded for completeness; delivery is
    /// edge-triggered regardless, as in FreeBSD and illumos (PCI MSI is
    /// edge-only).
    pub level: bool,
}

impl Msi {
    /// Decodes an MSI; EINVAL unless address bits 31:20 are 0xFEE (FreeBSD
    /// returns -1 there; like FreeBSD, bits 63:32 are not looked at).
    pub fn decode(addr: u64, msg: u64) -> Result<Msi> {
        if addr & MSI_ADDR_MASK != MSI_ADDR_BASE {
            return Err(Error::Inval);
        }
        let rh_log = MSI_ADDR_RH | MSI_ADDR_LOG;
        Ok(Msi {
            dest: ((addr >> 12) & 0xFF) as u8,
            phys: addr & rh_log != rh_log,
            delmode: (msg as u32) & DELMODE_MASK,
            vector: (msg & 0xFF) as u8,
            level: msg & 0x8000 != 0,
        })
    }
}

impl Vm {
    /// `vlapic_calcdest`: the active vCPUs addressed by `dest`. With
    /// `lowprio`, logical mode stops at the first match.
    pub fn calcdest(&self, dest: u32, phys: bool, lowprio: bool, x2apic_dest: bool) -> CpuSet {
        let broadcast = if x2apic_dest { dest == 0xFFFF_FFFF } else { dest == 0xFF };
        if broadcast {
            return self.active_cpus();
        }
        if phys {
            return self.phys_dest(dest).map(CpuSet::single).unwrap_or_default();
        }
        let active = self.active_cpus();
        let mut out = CpuSet::new();
        let flat_mda = dest & 0xFF;
        let (cluster_mda, cluster_ldest_mda) =
            if x2apic_dest { (dest >> 16, dest & 0xFFFF) } else { ((dest >> 4) & 0xF, dest & 0xF) };
        for id in active.iter() {
            let Ok(vcpu) = self.vcpu(id) else { continue };
            let (ldr, dfr, x2) = vcpu.vlapic.logical_id();
            let (ldest, mda) = match dfr & DFR_MODEL_MASK {
                DFR_MODEL_FLAT => (ldr >> 24, flat_mda),
                DFR_MODEL_CLUSTER => {
                    let (cluster, ldest) =
                        if x2 { (ldr >> 16, ldr & 0xFFFF) } else { (ldr >> 28, (ldr >> 24) & 0xF) };
                    if cluster != cluster_mda {
                        continue;
                    }
                    (ldest, cluster_ldest_mda)
                }
                // A bad logical model: this vCPU cannot be addressed.
                _ => continue,
            };
            if ldest & mda != 0 {
                out.insert(id);
                if lowprio {
                    break;
                }
            }
        }
        out
    }

    /// The active vCPU a physical, non-broadcast destination names (APIC
    /// ID = vCPU id), if any.
    fn phys_dest(&self, dest: u32) -> Option<usize> {
        let id = dest as usize;
        (id < self.maxcpus() && self.is_active(id)).then_some(id)
    }

    /// `lapic_set_intr`: accept `vector` on vCPU `id` and notify it.
    /// EINVAL for a vector outside 16..=255 (nothing is recorded then).
    #[inline]
    pub fn lapic_set_intr(&self, id: usize, vector: u32, level: bool) -> Result<()> {
        self.lapic_set_intr_from::<false>(id, vector, level)
    }

    /// `lapic_set_intr`; AFTER_RMW: the caller made a successful
    /// sequentially consistent read-modify-write earlier in program order
    /// (`Vlapic::set_intr_ready_after_rmw`).
    #[inline(always)]
    fn lapic_set_intr_from<const AFTER_RMW: bool>(&self, id: usize, vector: u32, level: bool) -> Result<()> {
        if !(16..=255).contains(&vector) {
            return Err(Error::Inval);
        }
        let vcpu = self.vcpu(id)?;
        let notify = if AFTER_RMW {
            vcpu.vlapic.set_intr_ready_after_rmw(vector as u8, level)
        } else {
            vcpu.vlapic.set_intr_ready(vector as u8, level)
        };
        if notify {
            vcpu.notify();
        }
        Ok(())
    }

    /// `vm_inject_nmi` on vCPU `id`.
    pub fn vcpu_inject_nmi(&self, id: usize) -> Result<()> {
        let vcpu = self.vcpu(id)?;
        if vcpu.vlapic.inject_nmi() {
            vcpu.notify();
        }
        Ok(())
    }

    /// `vm_inject_extint` on vCPU `id`.
    pub fn vcpu_inject_extint(&self, id: usize) -> Result<()> {
        let vcpu = self.vcpu(id)?;
        if vcpu.vlapic.inject_extint() {
            vcpu.notify();
        }
        Ok(())
    }

    /// `vlapic_deliver_intr`: an interrupt from the vioapic or an MSI.
    /// Fixed and lowest-priority modes are delivered, and ExtINT (made
    /// pending on every destination; the vector comes from the 8259 at
    /// injection); NMI, INIT, SMI and the rest are dropped, as in FreeBSD
    /// and illumos. `dest` is always in xAPIC format. Vectors below 16 are dropped
    /// silently (`lapic_set_intr` refuses them before the APIC sees them).
    ///
    /// Inlined: a physical destination (the device interrupt hot path) is
    /// one vCPU or none, found without building a destination set
    /// (`calcdest` finds the same); the rest is out of line.
    #[inline(always)]
    pub fn deliver_intr(&self, level: bool, dest: u32, phys: bool, delmode: u32, vector: u8) {
        self.deliver_intr_from::<false>(level, dest, phys, delmode, vector);
    }

    /// `deliver_intr` for a caller that made a successful sequentially
    /// consistent read-modify-write earlier in program order (the IOAPIC's
    /// lock-free edge send, after its assert count).
    #[inline(always)]
    pub(crate) fn deliver_intr_after_rmw(&self, level: bool, dest: u32, phys: bool, delmode: u32, vector: u8) {
        self.deliver_intr_from::<true>(level, dest, phys, delmode, vector);
    }

    #[inline(always)]
    fn deliver_intr_from<const AFTER_RMW: bool>(&self, level: bool, dest: u32, phys: bool, delmode: u32, vector: u8) {
        if phys && dest != 0xFF && matches!(delmode, DELMODE_FIXED | DELMODE_LOWPRIO) {
            if let Some(id) = self.phys_dest(dest) {
                let _ = self.lapic_set_intr_from::<AFTER_RMW>(id, u32::from(vector), level);
            }
            return;
        }
        self.deliver_intr_to_set(level, dest, phys, delmode, vector);
    }

    /// `deliver_intr` through a destination set.
    #[inline(never)]
    fn deliver_intr_to_set(&self, level: bool, dest: u32, phys: bool, delmode: u32, vector: u8) {
        if !matches!(delmode, DELMODE_FIXED | DELMODE_LOWPRIO | DELMODE_EXTINT) {
            return;
        }
        let dmask = self.calcdest(dest, phys, delmode == DELMODE_LOWPRIO, false);
        for id in dmask.iter() {
            if delmode == DELMODE_EXTINT {
                let _ = self.vcpu_inject_extint(id);
            } else {
                let _ = self.lapic_set_intr(id, u32::from(vector), level);
            }
        }
    }

    /// Deliver an IPI sent by vCPU `from` (an ICR or SELF_IPI write).
    ///
    /// Fixed goes to every destination; lowest priority to the first one
    /// (FreeBSD fails such an ICR write: VM_RUN fails for an MMIO write,
    /// an x2APIC WRMSR goes to userland; we deliver them like
    /// lowest-priority device interrupts); NMI to every destination.
    /// INIT and STARTUP are returned, with their targets, for the run loop
    /// (`Vm::handle_start_ipi`); which targets follows FreeBSD 14's
    /// `vlapic_icrlo_write_handler`: with the sender's VM_CAP_IPI_EXIT on,
    /// the destinations; off, only a physical destination other than the
    /// sender, the shorthand ignored. SMI and remote read never get here:
    /// the ICR write fails (`UnhandledIpi`), as in FreeBSD.
    pub fn send_ipi(&self, from: usize, ipi: Ipi) -> Option<StartIpi> {
        if matches!(ipi.mode, DELMODE_INIT | DELMODE_STARTUP) {
            return self.start_ipi_targets(from, &ipi);
        }
        let mut dmask = self.ipi_destinations(from, &ipi);
        if ipi.mode == DELMODE_LOWPRIO {
            dmask = dmask.first().map(CpuSet::single).unwrap_or_default();
        }
        // "ipis sent to vcpu[id]", in the sender's statistics: fixed IPIs
        // only, as FreeBSD (which fails lowest priority). The sender's
        // thread holds it (this is its ICR or SELF_IPI write).
        if ipi.mode == DELMODE_FIXED {
            if let Ok(v) = self.vcpu(from) {
                dmask.iter().for_each(|id| v.stats.add_ipi_sent(id));
            }
        }
        for id in dmask.iter() {
            match ipi.mode {
                DELMODE_FIXED | DELMODE_LOWPRIO => {
                    let _ = self.lapic_set_intr(id, u32::from(ipi.vector), false);
                }
                DELMODE_NMI => {
                    let _ = self.vcpu_inject_nmi(id);
                }
                _ => {}
            }
        }
        None
    }

    /// The vCPUs an IPI from `from` names: its shorthand, or else its
    /// destination field.
    fn ipi_destinations(&self, from: usize, ipi: &Ipi) -> CpuSet {
        match ipi.shorthand {
            DEST_SELF => CpuSet::single(from),
            DEST_ALLISELF => self.active_cpus(),
            DEST_ALLESELF => {
                let mut s = self.active_cpus();
                s.remove(from);
                s
            }
            _ => self.calcdest(ipi.dest, ipi.phys, false, ipi.x2apic_dest),
        }
    }

    fn start_ipi_targets(&self, from: usize, ipi: &Ipi) -> Option<StartIpi> {
        let ipi_exit = self.vcpu(from).ok()?.regs.lock().get_cap(CAP_IPI_EXIT).is_ok_and(|v| v != 0);
        let targets = if ipi_exit {
            self.ipi_destinations(from, ipi)
        } else {
            let id = ipi.dest as usize;
            if !ipi.phys || id >= self.maxcpus() || id == from {
                return None;
            }
            CpuSet::single(id)
        };
        (!targets.is_empty()).then_some(StartIpi { mode: ipi.mode, vector: ipi.vector, targets, ipi_exit })
    }

    /// `vm_handle_ipi`: an INIT resets its active targets' local APICs and
    /// leaves the targets waiting for a STARTUP; a STARTUP starts those of
    /// its targets that wait. Returns the exit to give the sender's VM_RUN
    /// caller: with VM_CAP_IPI_EXIT, VM_EXITCODE_IPI for both (a STARTUP
    /// only if it started someone); without, VM_EXITCODE_SPINUP_AP for a
    /// STARTUP that started its target, and nothing for an INIT.
    pub(crate) fn handle_start_ipi(&self, s: StartIpi) -> Option<ExitKind> {
        let ipi = |cpus| ExitKind::Ipi { mode: s.mode, vector: s.vector, cpus };
        if s.mode == DELMODE_INIT {
            let active = self.active_cpus();
            for id in s.targets.iter().filter(|id| active.contains(*id)) {
                if let Ok(v) = self.vcpu(id) {
                    v.vlapic.init_ipi();
                }
            }
            let mut c = self.cpus();
            c.startup = c.startup.union(&s.targets);
            drop(c);
            return s.ipi_exit.then(|| ipi(s.targets));
        }
        let started = {
            let mut c = self.cpus();
            let started = c.startup.intersection(&s.targets);
            started.iter().for_each(|id| c.startup.remove(id));
            started
        };
        let first = started.first()?;
        Some(if s.ipi_exit {
            ipi(started)
        } else {
            ExitKind::SpinupAp { vcpu: first, rip: u64::from(s.vector) << 12 }
        })
    }

    /// VM_LAPIC_MSI: decode and deliver (edge-triggered).
    pub fn lapic_msi(&self, addr: u64, msg: u64) -> Result<()> {
        let m = Msi::decode(addr, msg)?;
        self.deliver_intr(false, u32::from(m.dest), m.phys, m.delmode, m.vector);
        Ok(())
    }
}
