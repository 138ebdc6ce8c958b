//! FreeBSD's VM_EXITCODE_INOUT_STR: an INS or OUTS with what userland
//! needs to finish it (bhyve's `emulate_inout`): the paging state to
//! translate the guest address, RFLAGS (DF) and CR0 (AM), the index and
//! count registers, the address size and the segment, read from the
//! vCPU's registers at the exit as VMX's exit handler reads them.

use super::abi::{seg_desc, vm_inout, vm_inout_str, vm_reg_name};
use super::commands::c_guest_paging;
use crate::regs::{reg, VcpuRegs};

/// The exit's `u.inout_str` for `bytes`-byte items at `port`.
pub(crate) fn inout_str(port: u16, bytes: u8, is_in: bool, rep: bool, regs: &VcpuRegs) -> vm_inout_str {
    let get = |r: usize| regs.get(r as i32).unwrap_or(0);
    let mut inout = vm_inout::new(bytes, is_in, port, get(reg::RAX) as u32);
    inout.set_string(true);
    inout.set_rep(rep);
    let paging = regs.paging();
    // INS stores through ES:RDI; OUTS loads through DS:RSI (no segment
    // override in the simulated guest).
    let (seg, index) = if is_in {
        (vm_reg_name::VM_REG_GUEST_ES, get(reg::RDI))
    } else {
        (vm_reg_name::VM_REG_GUEST_DS, get(reg::RSI))
    };
    let desc = regs.get_seg(seg as i32).unwrap_or_default();
    vm_inout_str {
        inout,
        paging: c_guest_paging(&paging),
        rflags: get(reg::RFLAGS),
        cr0: get(reg::CR0),
        index,
        count: if rep { get(reg::RCX) } else { 1 },
        addrsize: i32::from(regs.address_size()),
        seg_name: seg as i32,
        seg_desc: seg_desc { base: desc.base, limit: desc.limit, access: desc.access },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::SegDesc;

    #[test]
    fn ins_and_outs_report_their_index_segment_and_count() {
        let mut r = VcpuRegs::default();
        r.power_on_reset();
        r.set(reg::RSI as i32, 0x1000).unwrap();
        r.set(reg::RDI as i32, 0x2000).unwrap();
        r.set(reg::RCX as i32, 7).unwrap();
        r.set(reg::RAX as i32, 0x1_2345_6789).unwrap();
        // What is not the reset state's: DF set (userland steps the index
        // down), a CR3, each segment's own descriptor.
        r.set(reg::RFLAGS as i32, 0x402).unwrap();
        r.set(reg::CR3 as i32, 0x5000).unwrap();
        r.set_seg(vm_reg_name::VM_REG_GUEST_DS as i32, SegDesc { base: 0x1_0000, limit: 0xfff, access: 0x93 }).unwrap();
        r.set_seg(vm_reg_name::VM_REG_GUEST_ES as i32, SegDesc { base: 0x2_0000, limit: 0x7ff, access: 0x92 }).unwrap();
        let outs = inout_str(0xe9, 1, false, true, &r);
        assert_eq!((outs.index, outs.count, outs.addrsize), (0x1000, 7, 2));
        assert_eq!(outs.seg_name, vm_reg_name::VM_REG_GUEST_DS as i32);
        assert_eq!((outs.seg_desc.base, outs.seg_desc.limit, outs.seg_desc.access), (0x1_0000, 0xfff, 0x93));
        assert!(outs.inout.string() && outs.inout.rep() && !outs.inout.is_in());
        assert_eq!((outs.inout.port, outs.inout.bytes(), outs.inout.eax), (0xe9, 1, 0x2345_6789));
        assert_eq!((outs.rflags, outs.cr0, outs.paging.cpu_mode, outs.paging.cr3), (0x402, 0x20, 0, 0x5000));
        let ins = inout_str(0x510, 2, true, false, &r);
        assert_eq!((ins.index, ins.count), (0x2000, 1), "no REP: one item");
        assert_eq!(ins.seg_name, vm_reg_name::VM_REG_GUEST_ES as i32);
        assert_eq!((ins.seg_desc.base, ins.seg_desc.limit, ins.seg_desc.access), (0x2_0000, 0x7ff, 0x92));
        assert!(ins.inout.is_in() && !ins.inout.rep());
    }
}
