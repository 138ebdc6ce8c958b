//! Register reads and writes (xAPIC MMIO offsets and the x2APIC MSR
//! view): what each register accepts, which writes have side effects, and
//! the ICR decoding that turns a write into an IPI request.

use std::time::Instant;

use super::icr::{icr_valid, Ipi, UnhandledIpi};
use super::regs::*;
use super::state::{LapicEffects, LapicState};

impl LapicState {
    /// LVT write: keep only the fields this LVT has; forced masked while
    /// the APIC is software-disabled.
    fn lvt_write(&mut self, idx: usize, val: u32) {
        let mut val = val;
        if !self.sw_enabled() {
            val |= LVT_M;
        }
        let mut mask = LVT_M | LVT_DS | VECTOR_MASK;
        match idx {
            lvt::TIMER => mask |= LVTT_MODE,
            lvt::ERROR => {}
            lvt::LINT0 | lvt::LINT1 => mask |= LVT_TM | LVT_RIRR | LVT_IIPP | DELMODE_MASK,
            _ => mask |= DELMODE_MASK,
        }
        self.lvt[idx] = val & mask;
    }

    fn svr_write(&mut self, val: u32, now: Instant) {
        let was = self.sw_enabled();
        self.svr = val;
        match (was, self.sw_enabled()) {
            (true, false) => {
                // Disabled: stop the timer and mask every LVT.
                self.timer_stop();
                for i in 0..lvt::COUNT {
                    self.lvt_write(i, self.lvt[i] | LVT_M);
                }
            }
            (false, true) if self.lvt[lvt::TIMER] & LVTT_PERIODIC != 0 => self.timer_restart(now),
            _ => {}
        }
    }

    /// Reads the register at `offset` (16-byte aligned, < 0x1000). Unknown
    /// and write-only registers read 0.
    pub fn read_reg(&self, offset: u32, now: Instant) -> u32 {
        let word = |base: u32| ((offset - base) / 16) as usize;
        match offset {
            off::ID => self.id,
            off::VER => VERSION,
            off::TPR => self.tpr,
            off::PPR => self.ppr,
            off::LDR => self.ldr,
            off::DFR => self.dfr,
            off::SVR => self.svr,
            o if (off::ISR0..off::ISR0 + 0x80).contains(&o) => self.isr.word(word(off::ISR0)),
            o if (off::TMR0..off::TMR0 + 0x80).contains(&o) => self.tmr.word(word(off::TMR0)),
            o if (off::IRR0..off::IRR0 + 0x80).contains(&o) => self.irr.word(word(off::IRR0)),
            off::ESR => self.esr,
            off::ICR_LO => self.icr_lo,
            off::ICR_HI => self.icr_hi,
            off::TIMER_ICR => self.timer.icr,
            off::TIMER_CCR => self.timer_ccr(now),
            off::TIMER_DCR => self.timer.dcr,
            o => lvt::from_offset(o).map_or(0, |i| self.lvt[i]),
        }
    }

    /// Writes the register at `offset` (16-byte aligned). `val` is 64 bits
    /// wide only for the x2APIC ICR. Read-only registers ignore writes.
    pub fn write_reg(&mut self, offset: u32, val: u64, now: Instant) -> LapicEffects {
        let data = val as u32;
        let mut fx = LapicEffects::default();
        let deadline = self.timer.deadline();
        match offset {
            // The ID is fixed (FreeBSD resets it on every write).
            off::ID => self.id = self.apic_id(),
            off::TPR => {
                self.tpr = data & 0xFF;
                self.update_ppr();
            }
            off::EOI => fx.eoi_vector = self.process_eoi(),
            off::LDR if self.x2apic => self.ldr = self.x2apic_ldr(),
            off::LDR => self.ldr = data & !LDR_RESERVED,
            off::DFR if self.x2apic => self.dfr = 0,
            off::DFR => self.dfr = (data & DFR_MODEL_MASK) | DFR_RESERVED,
            off::SVR => self.svr_write(data, now),
            off::ESR => self.esr = std::mem::take(&mut self.esr_pending),
            off::ICR_HI => self.icr_hi = data,
            off::ICR_LO => {
                self.icr_lo = data & !DELSTAT_PEND;
                if self.x2apic {
                    self.icr_hi = (val >> 32) as u32;
                }
                self.icr_send(&mut fx);
            }
            off::TIMER_ICR => self.timer_icr_write(data, now),
            off::TIMER_DCR => self.timer_dcr_write(data),
            off::SELF_IPI if self.x2apic => {
                fx.ipi = Some(Ipi {
                    mode: DELMODE_FIXED,
                    vector: data as u8,
                    dest: 0,
                    phys: true,
                    shorthand: DEST_SELF,
                    x2apic_dest: true,
                });
            }
            o => {
                if let Some(i) = lvt::from_offset(o) {
                    self.lvt_write(i, data);
                }
            }
        }
        fx.timer_armed = self.timer.deadline().is_some() && self.timer.deadline() != deadline;
        fx
    }

    /// An ICR low write sends: validate, refuse SMI and remote read
    /// (no delivery for them), reject illegal fixed vectors on the sender
    /// (ESR "send illegal vector"), else hand the IPI out.
    fn icr_send(&mut self, fx: &mut LapicEffects) {
        let lo = self.icr_lo;
        if !icr_valid(lo) {
            return;
        }
        let mode = lo & DELMODE_MASK;
        if matches!(mode, DELMODE_SMI | DELMODE_RR) {
            fx.unhandled_ipi = Some(UnhandledIpi { mode });
            return;
        }
        let vector = (lo & VECTOR_MASK) as u8;
        if (mode == DELMODE_FIXED || mode == DELMODE_LOWPRIO) && vector < 16 {
            fx.notify |= self.set_error(ESR_SEND_ILLEGAL_VECTOR, false);
            return;
        }
        fx.ipi = Some(Ipi {
            mode,
            vector,
            dest: if self.x2apic { self.icr_hi } else { self.icr_hi >> 24 },
            phys: lo & DESTMODE_LOG == 0,
            shorthand: lo & DEST_MASK,
            x2apic_dest: self.x2apic,
        });
    }

    /// x2APIC MSR read (`None` = #GP: not an APIC MSR, or xAPIC mode).
    pub fn read_msr(&self, msr: u32, now: Instant) -> Option<u64> {
        if msr == MSR_APICBASE {
            return Some(self.apicbase());
        }
        let offset = x2apic_msr_offset(msr)?;
        if !self.x2apic {
            return None;
        }
        Some(match offset {
            // The 64-bit ICR is one MSR.
            off::ICR_LO => u64::from(self.icr_lo) | (u64::from(self.icr_hi) << 32),
            _ => u64::from(self.read_reg(offset, now)),
        })
    }

    /// x2APIC MSR write (`None` = #GP). IA32_APIC_BASE cannot be changed
    /// (FreeBSD `vlapic_set_apicbase`): only its current value is accepted.
    pub fn write_msr(&mut self, msr: u32, val: u64, now: Instant) -> Option<LapicEffects> {
        if msr == MSR_APICBASE {
            return (val == self.apicbase()).then(LapicEffects::default);
        }
        let offset = x2apic_msr_offset(msr)?;
        if !self.x2apic {
            return None;
        }
        Some(self.write_reg(offset, val, now))
    }
}

fn x2apic_msr_offset(msr: u32) -> Option<u32> {
    (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr).then(|| (msr - MSR_X2APIC_FIRST) << 4)
}
