//! The state of one local APIC (what FreeBSD keeps in the APIC page plus
//! `struct vlapic`) and its interrupt logic: reset, mode, priority,
//! acceptance, EOI, LVT firing, NMI/ExtINT/INIT/SIPI and TMR staging.
//! Register access is in `access`, the timer in `timer`. Everything here
//! runs with the vlapic mutex held and touches only this APIC; effects on
//! other vCPUs or the vioapic are returned to the caller ([`LapicEffects`]).

use super::icr::{Ipi, UnhandledIpi};
use super::regs::*;
use super::timer::Timer;
use crate::error::{Error, Result};

/// VM_GET/SET_X2APIC_STATE values (`enum x2apic_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X2ApicState {
    Disabled = 0,
    Enabled = 1,
}

impl X2ApicState {
    /// Decodes a C value; anything but 0 or 1 is `None` (EINVAL).
    pub fn from_raw(v: i32) -> Option<Self> {
        match v {
            0 => Some(X2ApicState::Disabled),
            1 => Some(X2ApicState::Enabled),
            _ => None,
        }
    }
}

/// What a register write asks of the caller once the vlapic lock is
/// dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LapicEffects {
    /// Something became pending on this APIC: notify its vCPU.
    pub notify: bool,
    /// An EOI retired a vector accepted as level (`isr_level`): run the
    /// vioapic EOI path for it.
    pub eoi_vector: Option<u8>,
    /// An IPI to deliver.
    pub ipi: Option<Ipi>,
    /// An ICR write the APIC cannot deliver (the ICR is stored): the
    /// caller fails the write as FreeBSD does.
    pub unhandled_ipi: Option<UnhandledIpi>,
    /// The timer got a new deadline (an initial-count write, or a software
    /// enable restarting a periodic timer): whoever sleeps until the next
    /// deadline must look again.
    pub timer_armed: bool,
}

/// One local APIC's state.
#[derive(Debug, Clone)]
pub struct LapicState {
    pub(super) vcpuid: usize,
    pub(super) x2apic: bool,
    pub(super) id: u32,
    pub(super) tpr: u32,
    pub(super) ppr: u32,
    pub(super) ldr: u32,
    pub(super) dfr: u32,
    pub(super) svr: u32,
    pub(super) isr: VecBitmap,
    pub(super) tmr: VecBitmap,
    pub(super) irr: VecBitmap,
    /// The trigger mode each in-service vector was accepted with (its TMR
    /// bit when it moved from IRR to ISR): its EOI goes to the IOAPIC only
    /// if level. Apart from TMR because a vector can be in service as
    /// level while an edge instance of it is pending (TMR then reads edge,
    /// as on hardware).
    pub(super) isr_level: VecBitmap,
    pub(super) esr: u32,
    /// Errors latched into ESR by the next ESR write.
    pub(super) esr_pending: u32,
    pub(super) icr_lo: u32,
    pub(super) icr_hi: u32,
    /// LVT registers by `lvt::*` index.
    pub(super) lvt: [u32; lvt::COUNT],
    pub(super) timer: Timer,
    /// TMR changes staged by vioapic RTE writers, applied by the owning
    /// vCPU on entry to RUNNING. A vector is in at most one of the two.
    stage_set: VecBitmap,
    stage_clear: VecBitmap,
    nmi_pending: bool,
    /// An ExtINT (LINT0 or an ExtINT message): the vector comes from the
    /// 8259 when it is injected (FreeBSD keeps this flag in the vCPU).
    extint_pending: bool,
    /// EOIs with nothing in service (FreeBSD `VLAPIC_GRATUITOUS_EOI`).
    pub(super) gratuitous_eoi: u64,
    /// Error LVT interrupts an error raised (`VLAPIC_INTR_ERROR`).
    pub(super) error_interrupts: u64,
    /// LVTs VM_LAPIC_LOCAL_IRQ fired, by index (`LVTS_TRIGGERRED`).
    pub(super) lvts_triggered: [u64; lvt::COUNT],
}

/// What firing an LVT did ([`LapicState::fire_lvt`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct LvtFired {
    /// The entry raised its interrupt (FreeBSD `vlapic_fire_lvt`'s
    /// result, which its statistics count on): not masked, a legal
    /// vector, a mode that delivers.
    pub(super) raised: bool,
    /// The vCPU needs a notification (also for an error LVT an illegal
    /// vector raised instead).
    pub(super) notify: bool,
}

impl LvtFired {
    const NOTHING: LvtFired = LvtFired { raised: false, notify: false };
}

impl LapicState {
    /// A new APIC for `vcpuid`, in xAPIC mode, after reset.
    pub fn new(vcpuid: usize) -> Self {
        let mut s = LapicState {
            vcpuid,
            x2apic: false,
            id: 0,
            tpr: 0,
            ppr: 0,
            ldr: 0,
            dfr: 0,
            svr: 0,
            isr: VecBitmap::new(),
            isr_level: VecBitmap::new(),
            tmr: VecBitmap::new(),
            irr: VecBitmap::new(),
            esr: 0,
            esr_pending: 0,
            icr_lo: 0,
            icr_hi: 0,
            lvt: [0; lvt::COUNT],
            timer: Timer::new(),
            stage_set: VecBitmap::new(),
            stage_clear: VecBitmap::new(),
            nmi_pending: false,
            extint_pending: false,
            gratuitous_eoi: 0,
            error_interrupts: 0,
            lvts_triggered: [0; lvt::COUNT],
        };
        s.reset();
        s
    }

    /// `vlapic_reset` (INIT, VM creation): registers to their power-on
    /// values, software-disabled (SVR 0xFF), every LVT masked, timer
    /// stopped with divide-by-2. Mode-dependent ID/LDR/DFR follow the
    /// current x2APIC mode (FreeBSD leaves LDR 0 and DFR all-ones even in
    /// x2APIC mode; we use the values its `vlapic_set_x2apic_state` sets).
    /// Staged TMR changes and pending NMI/ExtINT are not APIC registers
    /// and survive.
    pub fn reset(&mut self) {
        self.tpr = 0;
        self.ppr = 0;
        self.isr = VecBitmap::new();
        self.isr_level = VecBitmap::new();
        self.tmr = VecBitmap::new();
        self.irr = VecBitmap::new();
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_lo = 0;
        self.icr_hi = 0;
        self.set_mode_registers();
        self.svr = SVR_VECTOR;
        self.lvt = [LVT_M; lvt::COUNT];
        // The timer-interrupt count is a vCPU statistic (FreeBSD
        // VLAPIC_INTR_TIMER), which only VM_REINIT zeroes.
        let fired = self.timer.fired;
        self.timer = Timer::new();
        self.timer.fired = fired;
    }

    /// Back to a new VM's state (VM_REINIT): xAPIC mode, reset, nothing
    /// pending or staged.
    pub fn reinit(&mut self) {
        *self = LapicState::new(self.vcpuid);
    }

    // --- identity and mode ------------------------------------------------

    pub(super) fn apic_id(&self) -> u32 {
        let id = self.vcpuid as u32;
        if self.x2apic {
            id
        } else {
            id << 24
        }
    }

    /// The LDR an x2APIC derives from its ID (cluster in 31:16, one-hot
    /// position in 15:0).
    pub(super) fn x2apic_ldr(&self) -> u32 {
        let id = self.vcpuid as u32;
        (1 << (id & 0xF)) | ((id & 0xFFFF0) << 12)
    }

    fn set_mode_registers(&mut self) {
        self.id = self.apic_id();
        if self.x2apic {
            self.ldr = self.x2apic_ldr();
            self.dfr = 0;
        } else {
            self.ldr = 0;
            self.dfr = 0xFFFF_FFFF;
        }
    }

    pub fn x2apic(&self) -> bool {
        self.x2apic
    }

    /// `vlapic_set_x2apic_state`: switch mode and reset the mode-dependent
    /// registers (ID, LDR, DFR).
    pub fn set_x2apic(&mut self, on: bool) {
        self.x2apic = on;
        self.set_mode_registers();
    }

    /// IA32_APIC_BASE: default base, enabled, BSP on vCPU 0, x2APIC bit.
    pub fn apicbase(&self) -> u64 {
        let mut v = LAPIC_BASE | APICBASE_ENABLED;
        if self.vcpuid == 0 {
            v |= APICBASE_BSP;
        }
        if self.x2apic {
            v |= APICBASE_X2APIC;
        }
        v
    }

    /// (LDR, DFR, x2APIC mode): what logical destination matching needs.
    pub fn logical_id(&self) -> (u32, u32, bool) {
        (self.ldr, self.dfr, self.x2apic)
    }

    pub fn sw_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    // --- priority, acceptance, EOI ------------------------------------------

    /// PPR = TPR if its class is at least that of the highest in-service
    /// vector, else that vector's class.
    pub(super) fn update_ppr(&mut self) {
        let isrvec = self.isr.highest().map_or(0, u32::from);
        let isrvec = if isrvec < 16 { 0 } else { isrvec };
        self.ppr = if prio(self.tpr) >= prio(isrvec) { self.tpr } else { prio(isrvec) };
    }

    pub fn ppr(&self) -> u32 {
        self.ppr
    }

    /// `vlapic_set_intr_ready`: accept `vector` into IRR, recording its
    /// trigger mode in TMR at the same time. Ignored while software
    /// disabled; vectors below 16 are illegal (ESR "receive illegal
    /// vector", error LVT). Returns whether the vCPU needs a notification:
    /// only when the vector was not pending already (whoever made it
    /// pending notified the vCPU after doing so, and the vCPU looks at IRR
    /// at its next entry or before it sleeps).
    ///
    /// An edge message for a vector pending as level joins it and leaves
    /// TMR alone. Hardware would relabel the vector, but there only a guest
    /// sharing one vector between edge and level sources sends such a
    /// message. Here an edge send also takes no vioapic lock, so it can read
    /// its pin's entry just before the guest rewrites the pin to level with
    /// the same vector and land after the rewrite's level send: relabelling
    /// would swallow that interrupt's EOI and leave the pin's remote IRR set
    /// for good. (A level instance already in service keeps its own mode in
    /// `isr_level`.)
    pub fn set_intr_ready(&mut self, vector: u8, level: bool) -> bool {
        if !self.sw_enabled() {
            return false;
        }
        if vector < 16 {
            return self.set_error(ESR_RECEIVE_ILLEGAL_VECTOR, false);
        }
        let pending_as_level = self.tmr.test(vector) && self.irr.test(vector);
        if level || !pending_as_level {
            self.tmr.put(vector, level);
        }
        let newly = !self.irr.test(vector);
        self.irr.set(vector);
        newly
    }

    /// The highest IRR vector whose priority class beats PPR.
    pub fn pending_intr(&mut self) -> Option<u8> {
        self.update_ppr();
        let v = self.irr.highest()?;
        (prio(u32::from(v)) > prio(self.ppr)).then_some(v)
    }

    /// The guest took `vector`: IRR -> ISR, PPR raised.
    pub fn intr_accepted(&mut self, vector: u8) {
        self.irr.clear(vector);
        self.isr.set(vector);
        self.isr_level.put(vector, self.tmr.test(vector));
        self.update_ppr();
    }

    /// EOI: retire the highest in-service vector. Returns it if it was
    /// accepted as level (the vioapic must see the EOI).
    pub fn process_eoi(&mut self) -> Option<u8> {
        let Some(v) = self.isr.highest() else {
            self.gratuitous_eoi += 1;
            return None;
        };
        self.isr.clear(v);
        self.update_ppr();
        let level = self.isr_level.test(v);
        self.isr_level.clear(v);
        level.then_some(v)
    }

    pub fn has_pending_event(&mut self) -> bool {
        self.nmi_pending || self.extint_pending || self.pending_intr().is_some()
    }

    // --- errors and LVTs ----------------------------------------------------

    /// Latch an error for ESR and raise the error LVT (unless the error
    /// comes from the error LVT itself, which would recurse).
    pub(super) fn set_error(&mut self, mask: u32, from_error_lvt: bool) -> bool {
        self.esr_pending |= mask;
        if from_error_lvt {
            return false;
        }
        let fired = self.fire_lvt(lvt::ERROR);
        if fired.raised {
            self.error_interrupts += 1;
        }
        fired.notify
    }

    /// `vlapic_fire_lvt`: raise LVT `idx` unless masked. Fixed mode sets
    /// the vector (edge) in IRR, NMI and ExtINT modes make those pending,
    /// other modes are ignored.
    pub(super) fn fire_lvt(&mut self, idx: usize) -> LvtFired {
        let reg = self.lvt[idx];
        if reg & LVT_M != 0 {
            return LvtFired::NOTHING;
        }
        let vec = (reg & VECTOR_MASK) as u8;
        let raised = |notify| LvtFired { raised: true, notify };
        match reg & DELMODE_MASK {
            // An illegal vector raises the error LVT instead (at most once:
            // the error LVT's own illegal vector only latches ESR).
            DELMODE_FIXED if vec < 16 => LvtFired {
                raised: false,
                notify: self.set_error(ESR_SEND_ILLEGAL_VECTOR, idx == lvt::ERROR),
            },
            DELMODE_FIXED => raised(self.set_intr_ready(vec, false)),
            DELMODE_NMI => raised(self.inject_nmi()),
            DELMODE_EXTINT => raised(self.inject_extint()),
            _ => LvtFired::NOTHING,
        }
    }

    /// `vlapic_trigger_lvt` (VM_LAPIC_LOCAL_IRQ). With the APIC disabled,
    /// LINT0 is the INTR pin (ExtINT) and LINT1 the NMI pin, other LVTs do
    /// nothing; enabled, any LVT index fires its entry. EINVAL for an
    /// unknown index on an enabled APIC. Counted in "lvts triggered" as
    /// FreeBSD: only when enabled and the entry raised something.
    pub fn trigger_lvt(&mut self, idx: i32) -> Result<bool> {
        if !self.sw_enabled() {
            return Ok(match idx {
                0 => self.inject_extint(),
                1 => self.inject_nmi(),
                _ => false,
            });
        }
        match usize::try_from(idx) {
            Ok(i) if i < lvt::COUNT => {
                let fired = self.fire_lvt(i);
                if fired.raised {
                    self.lvts_triggered[i] += 1;
                }
                Ok(fired.notify)
            }
            _ => Err(Error::Inval),
        }
    }

    // --- NMI, INIT -------------------------------------------------------------

    pub fn inject_nmi(&mut self) -> bool {
        self.nmi_pending = true;
        true
    }

    pub fn take_nmi(&mut self) -> bool {
        std::mem::replace(&mut self.nmi_pending, false)
    }

    pub fn nmi_pending(&self) -> bool {
        self.nmi_pending
    }

    /// `vm_inject_extint`: the 8259's INTR reached this vCPU; returns
    /// true (the vCPU needs a notification).
    pub fn inject_extint(&mut self) -> bool {
        self.extint_pending = true;
        true
    }

    /// Take the pending ExtINT, if any (`vm_extint_clear`).
    pub fn take_extint(&mut self) -> bool {
        std::mem::replace(&mut self.extint_pending, false)
    }

    pub fn extint_pending(&self) -> bool {
        self.extint_pending
    }

    /// INIT IPI: reset the APIC (FreeBSD `vlapic_handle_init`); waiting
    /// for the SIPI is the VM's business (`CpuSets::startup`).
    pub fn init_ipi(&mut self) {
        self.reset();
    }

    // --- TMR staging ----------------------------------------------------------

    /// Stage a TMR change from the vioapic write path; a later stage for
    /// the same vector replaces an earlier one.
    pub fn stage_tmr(&mut self, vector: u8, level: bool) {
        self.stage_set.put(vector, level);
        self.stage_clear.put(vector, !level);
    }

    /// Apply staged TMR changes to every vector that is neither pending nor
    /// in service. Those that are keep their acceptance-time TMR bit and
    /// stay staged, to be applied on a later entry once the vector has left
    /// IRR and ISR: a pending vector's bit is the mode it will be taken
    /// with (`isr_level`, which its EOI follows), and the TMR the guest
    /// reads for one in service stays that of its interrupt.
    pub fn apply_staged_tmr(&mut self) {
        let staged = self.stage_set.union(&self.stage_clear);
        if staged.is_empty() {
            return;
        }
        let busy = self.irr.union(&self.isr);
        for v in staged.iter().filter(|v| !busy.test(*v)) {
            self.tmr.put(v, self.stage_set.test(v));
            self.stage_set.clear(v);
            self.stage_clear.clear(v);
        }
    }

    /// Staged (set, clear) vectors.
    pub fn staged_tmr(&self) -> (VecBitmap, VecBitmap) {
        (self.stage_set, self.stage_clear)
    }
}
