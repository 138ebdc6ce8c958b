//! FreeBSD's VM_EXITCODE_INST_EMUL for an MMIO access that goes to
//! userland. FreeBSD's kernel decodes the guest's instruction before it
//! returns (`vm_handle_inst_emul`), so bhyve's `vmexit_inst_emul` hands
//! the decoded `struct vie` straight to its instruction emulator. The
//! simulated guest's access is described as the `mov` between RAX (AL,
//! AX, EAX) and memory that does it, with the fields FreeBSD's decoder
//! sets for such a `mov` in protected and long mode: the emulator reads
//! the value to store from RAX, and writes a loaded value back to RAX,
//! which is where the simulated guest reads it at the next entry. In real
//! mode FreeBSD's decoder gives up (`decode_modrm`); here the access is
//! described the same way, with 16-bit operand and address sizes (an
//! extension: bhyve's MOV emulation reads only the operand size).

use super::abi::{vie, vie_op, vm_exit_inst_emul, vm_reg_name};
use super::commands::c_guest_paging;
use crate::exit::MmioAccess;
use crate::gla2gpa::CPU_MODE_64BIT;
use crate::regs::VcpuRegs;

/// `struct vie_op.op_type` of a MOV (first after NONE in FreeBSD's
/// `vmm_instruction_emul.c`, which bhyve compiles in).
const VIE_OP_TYPE_MOV: u8 = 1;
/// The guest-linear address when it is not known (FreeBSD
/// `VIE_INVALID_GLA`, a non-canonical address).
const VIE_INVALID_GLA: u64 = 1 << 63;

/// `vie` bit-field bytes (see [`vie`]).
const REX_W: u8 = 1 << 0;
const REX_PRESENT: u8 = 1 << 4;
const OPSIZE_OVERRIDE: u8 = 1 << 7;

/// The exit's `u.inst_emul`: `a` as a decoded `mov` of `inst_length`
/// bytes, with the paging state and CS of `regs` (the vCPU at the exit).
pub(crate) fn inst_emul(a: &MmioAccess, inst_length: u32, regs: &VcpuRegs) -> vm_exit_inst_emul {
    let paging = regs.paging();
    let cs = regs.code_segment();
    let addrsize = regs.address_size();
    // The 0x66 prefix selects the operand size that is not the default:
    // 16 bits where the default is 32 (and in 64-bit mode), 32 where it
    // is 16.
    let other_size = if addrsize == 2 { 4 } else { 2 };
    // A byte move (0x88, 0x8A) keeps the mode's default operand size in
    // `opsize`, as FreeBSD's `decode_prefixes` leaves it (its MOV
    // emulation takes size 1 from the opcode).
    let opsize = if a.size == 1 { if addrsize == 2 { 2 } else { 4 } } else { a.size };
    let (op_byte, rex, override_) = match (a.size, a.write) {
        (1, true) => (0x88, 0, 0),
        (1, false) => (0x8a, 0, 0),
        (size, write) => (
            if write { 0x89 } else { 0x8b },
            if size == 8 { REX_W | REX_PRESENT } else { 0 },
            if size == other_size { OPSIZE_OVERRIDE } else { 0 },
        ),
    };
    // ModRM: mod 0, reg 0 (RAX), r/m 5, a 32-bit displacement with no
    // base (RIP-relative in 64-bit mode). It carries no address: the
    // emulator is given the guest-physical one.
    let (rm, disp_bytes) = (5, 4);
    let base = if paging.cpu_mode == CPU_MODE_64BIT {
        vm_reg_name::VM_REG_GUEST_RIP
    } else {
        vm_reg_name::VM_REG_LAST
    };
    let vie = vie {
        num_processed: inst_length.min(u32::from(u8::MAX)) as u8,
        bits: [addrsize | (opsize << 4), rex | override_, 0, rm, 0],
        disp_bytes,
        base_register: base as i32,
        index_register: vm_reg_name::VM_REG_LAST as i32,
        segment_register: vm_reg_name::VM_REG_LAST as i32,
        decoded: 1,
        op: vie_op { op_byte, op_type: VIE_OP_TYPE_MOV, op_flags: 0 },
        ..vie::default()
    };
    vm_exit_inst_emul {
        gpa: a.gpa,
        gla: VIE_INVALID_GLA,
        cs_base: cs.base,
        cs_d: i32::from(cs.d),
        paging: c_guest_paging(&paging),
        vie,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gla2gpa::{CPU_MODE_PROTECTED, CPU_MODE_REAL};

    fn access(size: u8, write: bool) -> MmioAccess {
        MmioAccess { gpa: 0xd000_0000, size, write, value: 0 }
    }

    #[test]
    fn each_size_and_direction_is_the_matching_mov() {
        let mut r = VcpuRegs::default();
        r.freebsd_long_mode(0x20_0000, 0x1000, 0x5000, 0x4000);
        for (size, write, op, bits1) in [
            (1, true, 0x88, 0),
            (1, false, 0x8a, 0),
            (2, true, 0x89, OPSIZE_OVERRIDE),
            (4, false, 0x8b, 0),
            (8, true, 0x89, REX_W | REX_PRESENT),
        ] {
            let e = inst_emul(&access(size, write), 3, &r);
            assert_eq!((e.vie.op.op_byte, e.vie.op.op_type, e.vie.decoded), (op, VIE_OP_TYPE_MOV, 1));
            let opsize = if size == 1 { 4 } else { size };
            assert_eq!(e.vie.bits, [8 | (opsize << 4), bits1, 0, 5, 0], "size {size} write {write}");
            assert_eq!((e.vie.num_valid, e.vie.num_processed), (0, 3));
            assert_eq!(e.vie.base_register, vm_reg_name::VM_REG_GUEST_RIP as i32);
            assert_eq!((e.gpa, e.gla, e.cs_base, e.cs_d), (0xd000_0000, VIE_INVALID_GLA, 0, 0));
            assert_eq!((e.paging.cr3, e.paging.cpu_mode, e.paging.paging_mode), (0x1000, CPU_MODE_64BIT, 3));
        }
    }

    /// Outside 64-bit mode the default sizes are CS.D's: 16 bits in real
    /// mode (a doubleword needs the operand-size prefix), 32 in protected
    /// mode (a word needs it); a byte move keeps the default operand size;
    /// no RIP-relative base; CS's base and D bit as they are.
    #[test]
    fn real_and_protected_mode_have_the_sizes_and_cs_of_cs_d() {
        let mut real = VcpuRegs::default();
        real.power_on_reset();
        let mut protected = VcpuRegs::default();
        protected.freebsd_i386(0x1000, 0x5000, 0x8000);
        let modes = [(&real, 2, 4, (0xffff_0000, 0, CPU_MODE_REAL)), (&protected, 4, 2, (0, 1, CPU_MODE_PROTECTED))];
        for (r, size, other, cs) in modes {
            let e = inst_emul(&access(other, true), 1, r);
            assert_eq!(e.vie.bits[..2], [size | (other << 4), OPSIZE_OVERRIDE]);
            assert_eq!(inst_emul(&access(size, false), 1, r).vie.bits[..2], [size | (size << 4), 0]);
            assert_eq!(inst_emul(&access(1, true), 1, r).vie.bits[0], size | (size << 4));
            assert_eq!((e.vie.bits[3], e.vie.disp_bytes), (5, 4));
            assert_eq!(e.vie.base_register, vm_reg_name::VM_REG_LAST as i32);
            assert_eq!((e.cs_base, e.cs_d, e.paging.cpu_mode), cs);
        }
    }
}
