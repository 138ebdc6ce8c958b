//! Guest programs for the simulated backend: what a vCPU's guest does,
//! one action at a time, and the built-in scripted guest.

use crate::exit::TaskSwitchReason;

/// The local APIC's EOI register, where a guest acknowledges an interrupt.
pub const LAPIC_EOI_GPA: u64 = 0xFEE0_00B0;

/// One guest instruction, as the simulated backend sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestAction {
    /// A step that touches nothing outside the guest.
    Compute,
    /// A load of `size` bytes (1, 2, 4, 8) at `gpa`: from RAM in place
    /// (no exit) where a memory map covers `gpa`, else MMIO.
    MmioRead { gpa: u64, size: u8 },
    /// A store, likewise.
    MmioWrite { gpa: u64, size: u8, value: u64 },
    /// `in` of `size` bytes (1, 2, 4) from `port`.
    PortIn { port: u16, size: u8 },
    /// `out` of `size` bytes to `port`.
    PortOut { port: u16, size: u8, value: u32 },
    /// HLT (with whatever the interrupt flag is).
    Hlt,
    /// PAUSE.
    Pause,
    /// STI: the guest accepts interrupts after its next instruction (the
    /// STI shadow, when it sets the flag), so STI then HLT waits for one.
    EnableInterrupts,
    /// CLI.
    DisableInterrupts,
    /// INT3: an exit with VM_CAP_BPT_EXIT, else #BP to the guest.
    Breakpoint,
    /// INS (`is_in`) or OUTS of `size`-byte items at `port`, with the
    /// index register (RDI for INS, RSI for OUTS) loaded with `index`
    /// and, for `count` `Some(n)`, a REP prefix with RCX = n. Userland
    /// moves the data and the registers (VM_EXITCODE_INOUT_STR); the
    /// instruction runs again while it restarts it.
    StringIo { port: u16, size: u8, is_in: bool, index: u64, count: Option<u64> },
    /// RDMSR of `msr`: the value (EDX:EAX) is the guest's read result.
    Rdmsr { msr: u32 },
    /// WRMSR of `value` to `msr` (EDX:EAX loaded with it first).
    Wrmsr { msr: u32, value: u64 },
    /// CPUID with EAX = `leaf`, ECX = `subleaf`: the library answers it
    /// (`cpuid`) in EAX, EBX, ECX, EDX.
    Cpuid { leaf: u32, subleaf: u32 },
    /// RDTSC: the guest's TSC in EDX:EAX (its read result). No exit.
    Rdtsc,
    /// RDTSCP: as RDTSC, and TSC_AUX in ECX.
    Rdtscp,
    /// RDPID: TSC_AUX in RAX (its read result).
    Rdpid,
    /// A far CALL or JMP to a TSS selector, or an IRET with NT set
    /// (`reason` Call, Jmp or Iret): a task switch for userland.
    TaskSwitch { tsssel: u16, reason: TaskSwitchReason },
    /// An instruction the VM does not offer that the processor
    /// intercepts: MONITOR, MWAIT, or a VMX instruction (VMCALL, VMXON,
    /// ...). The guest takes #UD at it, without an exit to userland.
    Refused(RefusedInstruction),
    /// Scripted guests only: EOI an interrupt the script took (a write to
    /// the local APIC's EOI), halting with interrupts enabled until one
    /// arrives if it owes none. Every external interrupt a script takes,
    /// wherever in the script it arrives, is owed one EOI (exceptions,
    /// NMIs and software interrupts none), so a loop of waits never leaves
    /// one in service for good.
    WaitInterruptEoi,
}

/// The instructions of [`GuestAction::Refused`]: CPUID offers neither
/// MONITOR/MWAIT nor VMX, so FreeBSD's `vm_run` answers their exits
/// (VM_EXITCODE_MONITOR, MWAIT, VMINSN) with #UD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedInstruction {
    Monitor,
    Mwait,
    /// VMCALL, VMCLEAR, VMLAUNCH, VMPTRLD, VMPTRST, VMREAD, VMRESUME,
    /// VMWRITE, VMXOFF or VMXON.
    Vmx,
}

/// A guest: called on the vCPU's thread while it is RUNNING, with the
/// backend's state for that vCPU locked. Its methods must not wait for a
/// vCPU of the same VM (`lock_one`, `lock_all`, `guest_stats`, ...): that
/// would wait for their own thread. (The C face refuses those calls from
/// its callbacks with EDEADLK.)
pub trait GuestProgram: Send {
    /// The next action. `rip` counts the guest's completed actions.
    fn next(&mut self, rip: u64) -> GuestAction;
    /// The guest took event `vector`: an exception, an NMI (vector 2), a
    /// software interrupt, or (unless `external_interrupt` says otherwise)
    /// an interrupt.
    fn interrupt(&mut self, vector: u8);
    /// The guest took external interrupt `vector` (from its local APIC,
    /// or the 8259's through ExtINT): what `interrupt` does, unless the
    /// guest owes such interrupts something (an EOI).
    fn external_interrupt(&mut self, vector: u8) {
        self.interrupt(vector);
    }
    /// The value of the last load (RAM or MMIO), port `in`, RDMSR,
    /// RDTSC, RDTSCP or RDPID.
    fn read_result(&mut self, value: u64);
    /// EAX, EBX, ECX, EDX of the last CPUID.
    fn cpuid_result(&mut self, _regs: [u32; 4]) {}
    /// VM_REINIT reset the processor: the guest starts over (its `rip`
    /// starts from 0 again).
    fn restart(&mut self) {}
}

/// A guest that runs an array of actions in order, then loops from
/// `loop_at` (or, if `loop_at` is `None`, disables interrupts and halts for
/// good, so a finished script parks its vCPU).
#[derive(Debug, Clone)]
pub struct ScriptedGuest {
    actions: Vec<GuestAction>,
    loop_at: Option<usize>,
    pc: usize,
    /// Interrupts taken and not yet EOIed by a WaitInterruptEoi. (What
    /// the guest took and read is counted by the backend: `GuestStats`.)
    eoi_owed: u32,
}

impl ScriptedGuest {
    /// A script; `loop_at` must index into `actions` (else it is ignored).
    pub fn new(actions: Vec<GuestAction>, loop_at: Option<usize>) -> Self {
        let loop_at = loop_at.filter(|l| *l < actions.len());
        ScriptedGuest {
            actions,
            loop_at,
            pc: 0,
            eoi_owed: 0,
        }
    }

    fn advance(&mut self) {
        self.pc += 1;
        if self.pc >= self.actions.len() {
            if let Some(l) = self.loop_at {
                self.pc = l;
            }
        }
    }
}

impl GuestProgram for ScriptedGuest {
    fn next(&mut self, _rip: u64) -> GuestAction {
        let Some(action) = self.actions.get(self.pc).copied() else {
            // End of a script without a loop: CLI once, then HLT forever.
            if self.pc == self.actions.len() {
                self.pc += 1;
                return GuestAction::DisableInterrupts;
            }
            return GuestAction::Hlt;
        };
        match action {
            GuestAction::WaitInterruptEoi if self.eoi_owed > 0 => {
                self.eoi_owed -= 1;
                self.advance();
                GuestAction::MmioWrite { gpa: LAPIC_EOI_GPA, size: 4, value: 0 }
            }
            // `sti; hlt` until the interrupt (the backend enables them).
            GuestAction::WaitInterruptEoi => GuestAction::WaitInterruptEoi,
            a => {
                self.advance();
                a
            }
        }
    }

    fn interrupt(&mut self, _vector: u8) {}

    fn external_interrupt(&mut self, _vector: u8) {
        self.eoi_owed = self.eoi_owed.saturating_add(1);
    }

    fn read_result(&mut self, _value: u64) {}

    /// From the first action again, owing nothing: the reset took every
    /// interrupt out of service.
    fn restart(&mut self) {
        self.pc = 0;
        self.eoi_owed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GuestAction::*;

    #[test]
    fn script_runs_in_order_and_loops() {
        let mut g = ScriptedGuest::new(vec![EnableInterrupts, Compute, Pause], Some(1));
        let seq: Vec<_> = (0..6).map(|i| g.next(i)).collect();
        assert_eq!(seq, vec![EnableInterrupts, Compute, Pause, Compute, Pause, Compute]);
    }

    #[test]
    fn script_without_loop_parks() {
        let mut g = ScriptedGuest::new(vec![Compute], None);
        assert_eq!(g.next(0), Compute);
        assert_eq!(g.next(1), DisableInterrupts);
        assert_eq!(g.next(1), Hlt);
        assert_eq!(g.next(2), Hlt);
    }

    #[test]
    fn wait_interrupt_eoi_halts_until_an_interrupt_then_eois() {
        let out = PortOut { port: 0x80, size: 1, value: 1 };
        let mut g = ScriptedGuest::new(vec![WaitInterruptEoi, out], Some(0));
        assert_eq!(g.next(0), WaitInterruptEoi);
        assert_eq!(g.next(0), WaitInterruptEoi);
        g.external_interrupt(0x30);
        assert_eq!(g.next(0), MmioWrite { gpa: LAPIC_EOI_GPA, size: 4, value: 0 });
        assert_eq!(g.next(1), out);
        assert_eq!(g.next(2), WaitInterruptEoi, "back at the wait");
        // Taken during the OUT: owed, EOIed at the next wait at once. An
        // exception, an NMI or a software interrupt is owed nothing.
        assert_eq!(g.next(2), WaitInterruptEoi);
        g.external_interrupt(0x31);
        let eoi = MmioWrite { gpa: LAPIC_EOI_GPA, size: 4, value: 0 };
        assert_eq!(g.next(2), eoi);
        g.external_interrupt(0x32);
        g.interrupt(13);
        g.interrupt(2);
        g.interrupt(0x80);
        assert_eq!(g.next(3), out);
        assert_eq!(g.next(4), eoi, "0x32's");
        assert_eq!(g.next(5), out);
        assert_eq!(g.next(6), WaitInterruptEoi, "nothing owed for #GP, NMI or INT 0x80");
    }

    /// VM_REINIT's reset took every interrupt out of service: the script
    /// starts over owing no EOI (one owed would be a stray EOI, at once).
    #[test]
    fn a_restarted_script_starts_over_owing_nothing() {
        let mut g = ScriptedGuest::new(vec![Compute, WaitInterruptEoi], None);
        assert_eq!(g.next(0), Compute);
        g.external_interrupt(0x30);
        g.restart();
        assert_eq!(g.next(0), Compute, "from the first action");
        assert_eq!(g.next(1), WaitInterruptEoi, "waiting, not EOIing");
    }
}
