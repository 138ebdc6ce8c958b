/*
 * ABI test: the generated vmm_rs.h must describe FreeBSD 14's amd64
 * <machine/vmm.h> / <machine/vmm_dev.h> ABI. Checks struct sizes, field
 * offsets, bit-field positions, enum values and every VM_* ioctl number
 * (recomputed here with the BSD _IOC formula). Needs only the header.
 */
#include <stddef.h>
#include <stdint.h>

#include "vmm_rs.h"
#include "test_util.h"

/* BSD ioctl encoding (sys/sys/ioccom.h), under names that cannot clash. */
#define T_IOC_VOID	0x20000000UL
#define T_IOC_OUT	0x40000000UL
#define T_IOC_IN	0x80000000UL
#define T_IOC_INOUT	0xc0000000UL
#define T_BSD_IOC(dir, num, len)                                            \
	((unsigned long)(dir) | (((unsigned long)(len) & 0x1fffUL) << 16) |   \
	    ((unsigned long)'v' << 8) | (unsigned long)(num))

#define CHECK_IOC(cmd, dir, num, len)                                       \
	CHECK((unsigned long)(cmd) == T_BSD_IOC(dir, num, len))

/* First 16 bits of an object, for bit-field checks. */
static uint16_t
raw16(const void *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return (v);
}

static uint32_t
raw32_at(const void *p, size_t off)
{
	uint32_t v;

	memcpy(&v, (const char *)p + off, sizeof(v));
	return (v);
}

static void
check_sizes(void)
{
	/* Sizes stated in semantics.md section 4. */
	CHECK(sizeof(struct vm_run) == 32);
	CHECK(sizeof(struct vm_exit) == 136);
	CHECK(sizeof(struct vm_register) == 16);
	CHECK(sizeof(struct vm_seg_desc) == 24);
	CHECK(sizeof(struct vm_capability) == 16);
	CHECK(sizeof(struct vm_ioapic_irq) == 4);
	CHECK(sizeof(struct vm_isa_irq) == 8);
	CHECK(sizeof(struct vm_lapic_irq) == 8);
	CHECK(sizeof(struct vm_lapic_msi) == 16);
	CHECK(sizeof(struct vm_activate_cpu) == 4);
	CHECK(sizeof(struct vm_suspend) == 4);
	CHECK(sizeof(struct vm_cpuset) == 16);
	CHECK(sizeof(struct vm_memseg) == 32);
	CHECK(sizeof(struct vm_memmap) == 40);
	CHECK(sizeof(struct vm_munmap) == 16);
	CHECK(sizeof(struct vm_intinfo) == 24);

	/* The other FreeBSD 14 amd64 structs. */
	CHECK(sizeof(cpuset_t) == 128);
	CHECK(sizeof(cpuset_t) * 8 == CPU_MAXSIZE);
	CHECK(sizeof(struct seg_desc) == 16);
	CHECK(sizeof(struct vm_guest_paging) == 24);
	CHECK(sizeof(struct vie_op) == 4);
	CHECK(sizeof(struct vie) == 64);
	CHECK(sizeof(struct vm_inout) == 8);
	CHECK(sizeof(struct vm_inout_str) == 88);
	CHECK(sizeof(struct vm_task_switch) == 48);
	CHECK(sizeof(union vm_exit_u) == 120);
	CHECK(sizeof(struct vm_register_set) == 24);
	CHECK(sizeof(struct vm_isa_irq_trigger) == 8);
	CHECK(sizeof(struct vm_exception) == 20);
	CHECK(sizeof(struct vm_nmi) == 4);
	CHECK(sizeof(struct vm_x2apic) == 8);
	CHECK(sizeof(struct vm_readwrite_kernemu_device) == 24);
	CHECK(sizeof(struct vm_cpu_topology) == 8);
	CHECK(sizeof(struct vm_stats) == 544);
	CHECK(sizeof(struct vm_stat_desc) == 132);
	CHECK(sizeof(struct vm_gla2gpa) == 56);
	CHECK(sizeof(struct vm_gpa_pte) == 48);
	CHECK(sizeof(struct vm_hpet_cap) == 4);
	CHECK(sizeof(struct vm_rtc_time) == 8);
	CHECK(sizeof(struct vm_rtc_data) == 8);
	CHECK(sizeof(struct vm_pptdev) == 12);
	CHECK(sizeof(struct vm_pptdev_mmio) == 40);
	CHECK(sizeof(struct vm_pptdev_msi) == 40);
	CHECK(sizeof(struct vm_pptdev_msix) == 48);
	CHECK(sizeof(((struct vm_memseg *)0)->name) == VM_MAX_SUFFIXLEN + 1);
	CHECK(sizeof(((struct vm_stats *)0)->statbuf) == 8 * MAX_VM_STATS);
	CHECK(sizeof(((struct vie *)0)->inst) == VIE_INST_SIZE);
}

static void
check_offsets(void)
{
	CHECK(offsetof(struct vm_run, cpuid) == 0);
	CHECK(offsetof(struct vm_run, cpuset) == 8);
	CHECK(offsetof(struct vm_run, cpusetsize) == 16);
	CHECK(offsetof(struct vm_run, vm_exit) == 24);

	CHECK(offsetof(struct vm_exit, exitcode) == 0);
	CHECK(offsetof(struct vm_exit, inst_length) == 4);
	CHECK(offsetof(struct vm_exit, rip) == 8);
	CHECK(offsetof(struct vm_exit, u) == 16);
	CHECK(offsetof(struct vm_exit, u.inout.port) == 18);
	CHECK(offsetof(struct vm_exit, u.inout.eax) == 20);
	CHECK(offsetof(struct vm_exit, u.inout_str.paging) == 24);
	CHECK(offsetof(struct vm_exit, u.inout_str.seg_desc) == 88);
	CHECK(offsetof(struct vm_exit, u.inst_emul.gpa) == 16);
	CHECK(offsetof(struct vm_exit, u.inst_emul.gla) == 24);
	CHECK(offsetof(struct vm_exit, u.inst_emul.cs_base) == 32);
	CHECK(offsetof(struct vm_exit, u.inst_emul.cs_d) == 40);
	CHECK(offsetof(struct vm_exit, u.inst_emul.paging) == 48);
	CHECK(offsetof(struct vm_exit, u.inst_emul.vie) == 72);
	CHECK(offsetof(struct vm_exit, u.hlt.intr_status) == 24);
	CHECK(offsetof(struct vm_exit, u.msr.wval) == 24);
	CHECK(offsetof(struct vm_exit, u.spinup_ap.rip) == 24);
	CHECK(offsetof(struct vm_exit, u.suspended.how) == 16);
	CHECK(offsetof(struct vm_exit, u.ioapic_eoi.vector) == 16);
	CHECK(offsetof(struct vm_exit, u.dbg.paging) == 32);
	CHECK(offsetof(struct vm_exit, u.task_switch.paging) == 40);

	/* FreeBSD's own _Static_asserts on struct vie. */
	CHECK(offsetof(struct vie, num_valid) == 15);
	CHECK(offsetof(struct vie, num_processed) == 16);
	CHECK(offsetof(struct vie, disp_bytes) == 22);
	CHECK(offsetof(struct vie, scale) == 24);
	CHECK(offsetof(struct vie, _sparebytes) == 26);
	CHECK(offsetof(struct vie, base_register) == 28);
	CHECK(offsetof(struct vie, displacement) == 40);
	CHECK(offsetof(struct vie, immediate) == 48);
	CHECK(offsetof(struct vie, decoded) == 56);
	CHECK(offsetof(struct vie, op) == 58);

	CHECK(offsetof(struct vm_register, cpuid) == 0);
	CHECK(offsetof(struct vm_register, regnum) == 4);
	CHECK(offsetof(struct vm_register, regval) == 8);

	CHECK(offsetof(struct vm_seg_desc, cpuid) == 0);
	CHECK(offsetof(struct vm_seg_desc, regnum) == 4);
	CHECK(offsetof(struct vm_seg_desc, desc) == 8);
	CHECK(offsetof(struct vm_seg_desc, desc.base) == 8);
	CHECK(offsetof(struct vm_seg_desc, desc.limit) == 16);
	CHECK(offsetof(struct vm_seg_desc, desc.access) == 20);

	CHECK(offsetof(struct vm_capability, cpuid) == 0);
	CHECK(offsetof(struct vm_capability, captype) == 4);
	CHECK(offsetof(struct vm_capability, capval) == 8);
	CHECK(offsetof(struct vm_capability, allcpus) == 12);

	CHECK(offsetof(struct vm_lapic_msi, msg) == 0);
	CHECK(offsetof(struct vm_lapic_msi, addr) == 8);

	CHECK(offsetof(struct vm_cpuset, which) == 0);
	CHECK(offsetof(struct vm_cpuset, cpusetsize) == 4);
	CHECK(offsetof(struct vm_cpuset, cpus) == 8);

	CHECK(offsetof(struct vm_memseg, segid) == 0);
	CHECK(offsetof(struct vm_memseg, len) == 8);
	CHECK(offsetof(struct vm_memseg, name) == 16);

	CHECK(offsetof(struct vm_memmap, gpa) == 0);
	CHECK(offsetof(struct vm_memmap, segid) == 8);
	CHECK(offsetof(struct vm_memmap, segoff) == 16);
	CHECK(offsetof(struct vm_memmap, len) == 24);
	CHECK(offsetof(struct vm_memmap, prot) == 32);
	CHECK(offsetof(struct vm_memmap, flags) == 36);

	CHECK(offsetof(struct vm_munmap, gpa) == 0);
	CHECK(offsetof(struct vm_munmap, len) == 8);

	CHECK(offsetof(struct vm_intinfo, vcpuid) == 0);
	CHECK(offsetof(struct vm_intinfo, info1) == 8);
	CHECK(offsetof(struct vm_intinfo, info2) == 16);

	CHECK(offsetof(struct vm_readwrite_kernemu_device, vcpuid) == 0);
	CHECK(offsetof(struct vm_readwrite_kernemu_device, gpa) == 8);
	CHECK(offsetof(struct vm_readwrite_kernemu_device, value) == 16);

	CHECK(offsetof(struct vm_register_set, count) == 4);
	CHECK(offsetof(struct vm_register_set, regnums) == 8);
	CHECK(offsetof(struct vm_register_set, regvals) == 16);
	CHECK(offsetof(struct vm_stats, tv) == 16);
	CHECK(offsetof(struct vm_stats, statbuf) == 32);
	CHECK(offsetof(struct vm_gla2gpa, paging) == 16);
	CHECK(offsetof(struct vm_gla2gpa, fault) == 40);
	CHECK(offsetof(struct vm_gla2gpa, gpa) == 48);
}

static void
check_bitfields(void)
{
	struct vm_exit vme;
	struct vm_readwrite_kernemu_device kd;
	struct vie vie;

	/* vm_inout: bytes bits 0-2, in bit 3, string bit 4, rep bit 5. */
	memset(&vme, 0, sizeof(vme));
	vme.u.inout.bytes = 4;
	vme.u.inout.in = 1;
	vme.u.inout.port = 0x3f8;
	vme.u.inout.eax = 0x12345678;
	CHECK(raw16(&vme.u.inout) == 0x000c);
	CHECK(raw32_at(&vme.u, 0) == 0x03f8000c);
	CHECK(raw32_at(&vme.u, 4) == 0x12345678);
	vme.u.inout.string = 1;
	CHECK(raw16(&vme.u.inout) == 0x001c);
	vme.u.inout.rep = 1;
	CHECK(raw16(&vme.u.inout) == 0x003c);
	vme.u.inout.in = 0;
	vme.u.inout.bytes = 7;
	CHECK(raw16(&vme.u.inout) == 0x0037);
	/* u.inout_str.inout aliases u.inout. */
	CHECK(vme.u.inout_str.inout.port == 0x3f8);
	CHECK(vme.u.inout_str.inout.bytes == 7);

	memset(&vme, 0, sizeof(vme));
	vme.u._raw[0] = 0x0000abcd00000019ULL; /* bytes 1, in 1, string 1 */
	CHECK(vme.u.inout.bytes == 1);
	CHECK(vme.u.inout.in == 1);
	CHECK(vme.u.inout.string == 1);
	CHECK(vme.u.inout.rep == 0);
	CHECK(vme.u.inout.port == 0);
	CHECK(vme.u.inout.eax == 0xabcd);

	/* vm_readwrite_kernemu_device: access_width bits 0-2 of word 1. */
	memset(&kd, 0, sizeof(kd));
	kd.access_width = 3;
	CHECK(raw32_at(&kd, 4) == 3);
	kd._unused = 0x1fffffff;
	CHECK(raw32_at(&kd, 4) == 0xfffffffb);
	CHECK(kd.access_width == 3);

	/* vie: a few bit-fields at FreeBSD's positions. */
	memset(&vie, 0, sizeof(vie));
	vie.opsize = 8;
	CHECK(((const uint8_t *)&vie)[17] == 0x80);
	vie.opsize_override = 1;
	CHECK(((const uint8_t *)&vie)[18] == 0x80);
	vie.segment_override = 1;
	vie.reg = 0xf;
	CHECK(((const uint8_t *)&vie)[19] == 0xf2);
	vie.vex_l = 1;
	CHECK(((const uint8_t *)&vie)[20] == 0x80);
	vie.base = 0x5;
	CHECK(((const uint8_t *)&vie)[21] == 0x50);
	vie.vex_pp = 3;
	CHECK(((const uint8_t *)&vie)[25] == 0x30);
	CHECK(((const uint8_t *)&vie)[22] == 0);
	CHECK(((const uint8_t *)&vie)[24] == 0);
}

static void
check_enums(void)
{
	CHECK(VM_SUSPEND_NONE == 0 && VM_SUSPEND_TRIPLEFAULT == 4);
	CHECK(VM_SUSPEND_LAST == 5);
	CHECK(VM_REG_GUEST_RAX == 0 && VM_REG_GUEST_CR0 == 15);
	CHECK(VM_REG_GUEST_RIP == 20 && VM_REG_GUEST_EFER == 32);
	CHECK(VM_REG_GUEST_ENTRY_INST_LENGTH == 44 && VM_REG_GUEST_TPR == 48);
	CHECK(VM_REG_LAST == 49);
	CHECK(VM_CAP_HALT_EXIT == 0 && VM_CAP_RFLAGS_TF == 10);
	CHECK(VM_CAP_MAX == 11);
	CHECK(VM_EXITCODE_INOUT == 0 && VM_EXITCODE_HLT == 5);
	CHECK(VM_EXITCODE_INST_EMUL == 9 && VM_EXITCODE_IOAPIC_EOI == 13);
	CHECK(VM_EXITCODE_SUSPENDED == 14 && VM_EXITCODE_REQIDLE == 20);
	CHECK(VM_EXITCODE_DEBUG == 21 && VM_EXITCODE_DB == 25);
	CHECK(VM_EXITCODE_MAX == 26);
	CHECK(X2APIC_DISABLED == 0 && X2APIC_ENABLED == 1);
	CHECK(X2APIC_STATE_LAST == 2);
	CHECK(EDGE_TRIGGER == 0 && LEVEL_TRIGGER == 1);
	CHECK(VM_MMAP_NONE == 0 && VM_MMAP_ALL == 1 && VM_MMAP_SPARSE == 2);
	CHECK(PAGING_MODE_64_LA57 == 4 && CPU_MODE_64BIT == 3);
	CHECK(VM_ACTIVE_CPUS == 0 && VM_SUSPENDED_CPUS == 1);
	CHECK(VM_DEBUG_CPUS == 2);
	CHECK(VM_MAX_NAMELEN == 229 && VM_MAX_SUFFIXLEN == 15);
	CHECK(VM_MEMMAP_F_WIRED == 1 && VM_MEMMAP_F_IOMMU == 2);
}

static void
check_ioctls(void)
{
	CHECK_IOC(VM_RUN, T_IOC_INOUT, 1, sizeof(struct vm_run));
	CHECK_IOC(VM_SET_CAPABILITY, T_IOC_IN, 2, sizeof(struct vm_capability));
	CHECK_IOC(VM_GET_CAPABILITY, T_IOC_INOUT, 3, sizeof(struct vm_capability));
	CHECK_IOC(VM_SUSPEND, T_IOC_IN, 4, sizeof(struct vm_suspend));
	CHECK_IOC(VM_REINIT, T_IOC_VOID, 5, 0);
	CHECK_IOC(VM_GET_GPA_PMAP, T_IOC_INOUT, 12, sizeof(struct vm_gpa_pte));
	CHECK_IOC(VM_GLA2GPA, T_IOC_INOUT, 13, sizeof(struct vm_gla2gpa));
	CHECK_IOC(VM_ALLOC_MEMSEG, T_IOC_IN, 14, sizeof(struct vm_memseg));
	CHECK_IOC(VM_GET_MEMSEG, T_IOC_INOUT, 15, sizeof(struct vm_memseg));
	CHECK_IOC(VM_MMAP_MEMSEG, T_IOC_IN, 16, sizeof(struct vm_memmap));
	CHECK_IOC(VM_MMAP_GETNEXT, T_IOC_INOUT, 17, sizeof(struct vm_memmap));
	CHECK_IOC(VM_GLA2GPA_NOFAULT, T_IOC_INOUT, 18, sizeof(struct vm_gla2gpa));
	CHECK_IOC(VM_MUNMAP_MEMSEG, T_IOC_IN, 19, sizeof(struct vm_munmap));
	CHECK_IOC(VM_SET_REGISTER, T_IOC_IN, 20, sizeof(struct vm_register));
	CHECK_IOC(VM_GET_REGISTER, T_IOC_INOUT, 21, sizeof(struct vm_register));
	CHECK_IOC(VM_SET_SEGMENT_DESCRIPTOR, T_IOC_IN, 22, sizeof(struct vm_seg_desc));
	CHECK_IOC(VM_GET_SEGMENT_DESCRIPTOR, T_IOC_INOUT, 23, sizeof(struct vm_seg_desc));
	CHECK_IOC(VM_SET_REGISTER_SET, T_IOC_IN, 24, sizeof(struct vm_register_set));
	CHECK_IOC(VM_GET_REGISTER_SET, T_IOC_INOUT, 25, sizeof(struct vm_register_set));
	CHECK_IOC(VM_GET_KERNEMU_DEV, T_IOC_INOUT, 26, sizeof(struct vm_readwrite_kernemu_device));
	CHECK_IOC(VM_SET_KERNEMU_DEV, T_IOC_IN, 27, sizeof(struct vm_readwrite_kernemu_device));
	CHECK_IOC(VM_GET_INTINFO, T_IOC_INOUT, 28, sizeof(struct vm_intinfo));
	CHECK_IOC(VM_SET_INTINFO, T_IOC_IN, 29, sizeof(struct vm_intinfo));
	CHECK_IOC(VM_INJECT_EXCEPTION, T_IOC_IN, 30, sizeof(struct vm_exception));
	CHECK_IOC(VM_LAPIC_IRQ, T_IOC_IN, 31, sizeof(struct vm_lapic_irq));
	CHECK_IOC(VM_INJECT_NMI, T_IOC_IN, 32, sizeof(struct vm_nmi));
	CHECK_IOC(VM_IOAPIC_ASSERT_IRQ, T_IOC_IN, 33, sizeof(struct vm_ioapic_irq));
	CHECK_IOC(VM_IOAPIC_DEASSERT_IRQ, T_IOC_IN, 34, sizeof(struct vm_ioapic_irq));
	CHECK_IOC(VM_IOAPIC_PULSE_IRQ, T_IOC_IN, 35, sizeof(struct vm_ioapic_irq));
	CHECK_IOC(VM_LAPIC_MSI, T_IOC_IN, 36, sizeof(struct vm_lapic_msi));
	CHECK_IOC(VM_LAPIC_LOCAL_IRQ, T_IOC_IN, 37, sizeof(struct vm_lapic_irq));
	CHECK_IOC(VM_IOAPIC_PINCOUNT, T_IOC_OUT, 38, sizeof(int));
	CHECK_IOC(VM_RESTART_INSTRUCTION, T_IOC_IN, 39, sizeof(int));
	CHECK_IOC(VM_BIND_PPTDEV, T_IOC_IN, 40, sizeof(struct vm_pptdev));
	CHECK_IOC(VM_UNBIND_PPTDEV, T_IOC_IN, 41, sizeof(struct vm_pptdev));
	CHECK_IOC(VM_MAP_PPTDEV_MMIO, T_IOC_IN, 42, sizeof(struct vm_pptdev_mmio));
	CHECK_IOC(VM_PPTDEV_MSI, T_IOC_IN, 43, sizeof(struct vm_pptdev_msi));
	CHECK_IOC(VM_PPTDEV_MSIX, T_IOC_IN, 44, sizeof(struct vm_pptdev_msix));
	CHECK_IOC(VM_PPTDEV_DISABLE_MSIX, T_IOC_IN, 45, sizeof(struct vm_pptdev));
	CHECK_IOC(VM_UNMAP_PPTDEV_MMIO, T_IOC_IN, 46, sizeof(struct vm_pptdev_mmio));
	CHECK_IOC(VM_STATS, T_IOC_INOUT, 50, sizeof(struct vm_stats));
	CHECK_IOC(VM_STAT_DESC, T_IOC_INOUT, 51, sizeof(struct vm_stat_desc));
	CHECK_IOC(VM_SET_X2APIC_STATE, T_IOC_IN, 60, sizeof(struct vm_x2apic));
	CHECK_IOC(VM_GET_X2APIC_STATE, T_IOC_INOUT, 61, sizeof(struct vm_x2apic));
	CHECK_IOC(VM_GET_HPET_CAPABILITIES, T_IOC_OUT, 62, sizeof(struct vm_hpet_cap));
	CHECK_IOC(VM_SET_TOPOLOGY, T_IOC_IN, 63, sizeof(struct vm_cpu_topology));
	CHECK_IOC(VM_GET_TOPOLOGY, T_IOC_OUT, 64, sizeof(struct vm_cpu_topology));
	CHECK_IOC(VM_ISA_ASSERT_IRQ, T_IOC_IN, 80, sizeof(struct vm_isa_irq));
	CHECK_IOC(VM_ISA_DEASSERT_IRQ, T_IOC_IN, 81, sizeof(struct vm_isa_irq));
	CHECK_IOC(VM_ISA_PULSE_IRQ, T_IOC_IN, 82, sizeof(struct vm_isa_irq));
	CHECK_IOC(VM_ISA_SET_IRQ_TRIGGER, T_IOC_IN, 83, sizeof(struct vm_isa_irq_trigger));
	CHECK_IOC(VM_ACTIVATE_CPU, T_IOC_IN, 90, sizeof(struct vm_activate_cpu));
	CHECK_IOC(VM_GET_CPUS, T_IOC_IN, 91, sizeof(struct vm_cpuset));
	CHECK_IOC(VM_SUSPEND_CPU, T_IOC_IN, 92, sizeof(struct vm_activate_cpu));
	CHECK_IOC(VM_RESUME_CPU, T_IOC_IN, 93, sizeof(struct vm_activate_cpu));
	CHECK_IOC(VM_RTC_READ, T_IOC_INOUT, 100, sizeof(struct vm_rtc_data));
	CHECK_IOC(VM_RTC_WRITE, T_IOC_IN, 101, sizeof(struct vm_rtc_data));
	CHECK_IOC(VM_RTC_SETTIME, T_IOC_IN, 102, sizeof(struct vm_rtc_time));
	CHECK_IOC(VM_RTC_GETTIME, T_IOC_OUT, 103, sizeof(struct vm_rtc_time));
	CHECK_IOC(VM_RESTORE_TIME, T_IOC_INOUT, 115, sizeof(int));
}

/* FreeBSD vmm.h's helper macros and typedefs, as bhyve uses them. */
static void
check_vmm_h_helpers(void)
{
	uint64_t info = VM_INTINFO_VALID | VM_INTINFO_HWEXCEPTION | VM_INTINFO_DEL_ERRCODE | 14;
	CHECK(VM_INTINFO_VECTOR(info) == 14);
	/* A present 32-bit ring-3 code segment, 4 KiB granular. */
	uint32_t access = 0xc0fb;
	CHECK(SEG_DESC_TYPE(access) == 0x1b && SEG_DESC_DPL(access) == 3);
	CHECK(SEG_DESC_PRESENT(access) && SEG_DESC_DEF32(access) && SEG_DESC_GRANULARITY(access));
	CHECK(!SEG_DESC_UNUSABLE(access) && SEG_DESC_UNUSABLE(0x10000));
	CHECK(sizeof(vm_paddr_t) == 8 && sizeof(vm_ooffset_t) == 8 && (vm_ooffset_t)-1 < 0);
}

/*
 * The rest of the FreeBSD 14 layouts bhyve reads: every vm_exit union
 * member's fields, and the argument structs check_offsets() leaves out.
 */
static void
check_more_offsets(void)
{
	CHECK(offsetof(struct vm_exit, u.paging.gpa) == 16);
	CHECK(offsetof(struct vm_exit, u.paging.fault_type) == 24);
	CHECK(offsetof(struct vm_exit, u.vmx.status) == 16);
	CHECK(offsetof(struct vm_exit, u.vmx.exit_reason) == 20);
	CHECK(offsetof(struct vm_exit, u.vmx.exit_qualification) == 24);
	CHECK(offsetof(struct vm_exit, u.vmx.inst_type) == 32);
	CHECK(offsetof(struct vm_exit, u.vmx.inst_error) == 36);
	CHECK(offsetof(struct vm_exit, u.svm.exitcode) == 16);
	CHECK(offsetof(struct vm_exit, u.svm.exitinfo1) == 24);
	CHECK(offsetof(struct vm_exit, u.svm.exitinfo2) == 32);
	CHECK(offsetof(struct vm_exit, u.bpt.inst_length) == 16);
	CHECK(offsetof(struct vm_exit, u.dbg.trace_trap) == 16);
	CHECK(offsetof(struct vm_exit, u.dbg.pushf_intercept) == 20);
	CHECK(offsetof(struct vm_exit, u.dbg.tf_shadow_val) == 24);
	CHECK(offsetof(struct vm_exit, u.msr.code) == 16);
	CHECK(sizeof(((struct vm_exit *)0)->u.msr.code) == 4);
	CHECK(offsetof(struct vm_exit, u.spinup_ap.vcpu) == 16);
	CHECK(offsetof(struct vm_exit, u.hlt.rflags) == 16);
	CHECK(offsetof(struct vm_exit, u.ipi.mode) == 16);
	CHECK(offsetof(struct vm_exit, u.ipi.vector) == 20);
	CHECK(sizeof(((struct vm_exit *)0)->u.ipi.vector) == 1);
	CHECK(offsetof(struct vm_exit, u.inout_str.rflags) == 48);
	CHECK(offsetof(struct vm_exit, u.inout_str.cr0) == 56);
	CHECK(offsetof(struct vm_exit, u.inout_str.index) == 64);
	CHECK(offsetof(struct vm_exit, u.inout_str.count) == 72);
	CHECK(offsetof(struct vm_exit, u.inout_str.addrsize) == 80);
	CHECK(offsetof(struct vm_exit, u.inout_str.seg_name) == 84);
	CHECK(offsetof(struct vm_exit, u.task_switch.tsssel) == 16);
	CHECK(offsetof(struct vm_exit, u.task_switch.ext) == 20);
	CHECK(offsetof(struct vm_exit, u.task_switch.errcode) == 24);
	CHECK(offsetof(struct vm_exit, u.task_switch.errcode_valid) == 28);
	CHECK(offsetof(struct vm_exit, u.task_switch.reason) == 32);

	CHECK(offsetof(struct vm_guest_paging, cpl) == 8);
	CHECK(offsetof(struct vm_guest_paging, cpu_mode) == 12);
	CHECK(offsetof(struct vm_guest_paging, paging_mode) == 16);
	CHECK(offsetof(struct vm_exception, vector) == 4);
	CHECK(offsetof(struct vm_exception, error_code) == 8);
	CHECK(offsetof(struct vm_exception, error_code_valid) == 12);
	CHECK(offsetof(struct vm_exception, restart_instruction) == 16);
	CHECK(offsetof(struct vm_isa_irq_trigger, trigger) == 4);
	CHECK(offsetof(struct vm_x2apic, state) == 4);
	CHECK(offsetof(struct vm_stats, index) == 4);
	CHECK(offsetof(struct vm_stats, num_entries) == 8);
	CHECK(offsetof(struct vm_stat_desc, desc) == 4);
	CHECK(offsetof(struct vm_gla2gpa, prot) == 4);
	CHECK(offsetof(struct vm_gla2gpa, gla) == 8);
	CHECK(offsetof(struct vm_gpa_pte, pte) == 8);
	CHECK(offsetof(struct vm_gpa_pte, ptenum) == 40);
	CHECK(offsetof(struct vm_rtc_data, value) == 4);
	CHECK(offsetof(struct vm_cpu_topology, cores) == 2);
	CHECK(offsetof(struct vm_cpu_topology, threads) == 4);
	CHECK(offsetof(struct vm_cpu_topology, maxcpus) == 6);
	CHECK(offsetof(struct vm_pptdev_mmio, gpa) == 16);
	CHECK(offsetof(struct vm_pptdev_mmio, hpa) == 24);
	CHECK(offsetof(struct vm_pptdev_mmio, len) == 32);
	CHECK(offsetof(struct vm_pptdev_msi, numvec) == 16);
	CHECK(offsetof(struct vm_pptdev_msi, msg) == 24);
	CHECK(offsetof(struct vm_pptdev_msi, addr) == 32);
	CHECK(offsetof(struct vm_pptdev_msix, idx) == 16);
	CHECK(offsetof(struct vm_pptdev_msix, msg) == 24);
	CHECK(offsetof(struct vm_pptdev_msix, vector_control) == 32);
	CHECK(offsetof(struct vm_pptdev_msix, addr) == 40);
}

/* Every value of the FreeBSD 14 enums and the vmm.h / vmmapi.h constants. */
static void
check_all_enum_values(void)
{
	static const int regs[] = { VM_REG_GUEST_RAX, VM_REG_GUEST_RBX,
	    VM_REG_GUEST_RCX, VM_REG_GUEST_RDX, VM_REG_GUEST_RSI,
	    VM_REG_GUEST_RDI, VM_REG_GUEST_RBP, VM_REG_GUEST_R8,
	    VM_REG_GUEST_R9, VM_REG_GUEST_R10, VM_REG_GUEST_R11,
	    VM_REG_GUEST_R12, VM_REG_GUEST_R13, VM_REG_GUEST_R14,
	    VM_REG_GUEST_R15, VM_REG_GUEST_CR0, VM_REG_GUEST_CR3,
	    VM_REG_GUEST_CR4, VM_REG_GUEST_DR7, VM_REG_GUEST_RSP,
	    VM_REG_GUEST_RIP, VM_REG_GUEST_RFLAGS, VM_REG_GUEST_ES,
	    VM_REG_GUEST_CS, VM_REG_GUEST_SS, VM_REG_GUEST_DS,
	    VM_REG_GUEST_FS, VM_REG_GUEST_GS, VM_REG_GUEST_LDTR,
	    VM_REG_GUEST_TR, VM_REG_GUEST_IDTR, VM_REG_GUEST_GDTR,
	    VM_REG_GUEST_EFER, VM_REG_GUEST_CR2, VM_REG_GUEST_PDPTE0,
	    VM_REG_GUEST_PDPTE1, VM_REG_GUEST_PDPTE2, VM_REG_GUEST_PDPTE3,
	    VM_REG_GUEST_INTR_SHADOW, VM_REG_GUEST_DR0, VM_REG_GUEST_DR1,
	    VM_REG_GUEST_DR2, VM_REG_GUEST_DR3, VM_REG_GUEST_DR6,
	    VM_REG_GUEST_ENTRY_INST_LENGTH, VM_REG_GUEST_FS_BASE,
	    VM_REG_GUEST_GS_BASE, VM_REG_GUEST_KGS_BASE, VM_REG_GUEST_TPR,
	    VM_REG_LAST };
	static const int exits[] = { VM_EXITCODE_INOUT, VM_EXITCODE_VMX,
	    VM_EXITCODE_BOGUS, VM_EXITCODE_RDMSR, VM_EXITCODE_WRMSR,
	    VM_EXITCODE_HLT, VM_EXITCODE_MTRAP, VM_EXITCODE_PAUSE,
	    VM_EXITCODE_PAGING, VM_EXITCODE_INST_EMUL, VM_EXITCODE_SPINUP_AP,
	    VM_EXITCODE_DEPRECATED1, VM_EXITCODE_RENDEZVOUS,
	    VM_EXITCODE_IOAPIC_EOI, VM_EXITCODE_SUSPENDED,
	    VM_EXITCODE_INOUT_STR, VM_EXITCODE_TASK_SWITCH,
	    VM_EXITCODE_MONITOR, VM_EXITCODE_MWAIT, VM_EXITCODE_SVM,
	    VM_EXITCODE_REQIDLE, VM_EXITCODE_DEBUG, VM_EXITCODE_VMINSN,
	    VM_EXITCODE_BPT, VM_EXITCODE_IPI, VM_EXITCODE_DB,
	    VM_EXITCODE_MAX };
	static const int caps[] = { VM_CAP_HALT_EXIT, VM_CAP_MTRAP_EXIT,
	    VM_CAP_PAUSE_EXIT, VM_CAP_UNRESTRICTED_GUEST,
	    VM_CAP_ENABLE_INVPCID, VM_CAP_BPT_EXIT, VM_CAP_RDPID,
	    VM_CAP_RDTSCP, VM_CAP_IPI_EXIT, VM_CAP_MASK_HWINTR,
	    VM_CAP_RFLAGS_TF, VM_CAP_MAX };
	static const int small[] = { VM_SUSPEND_NONE, VM_SUSPEND_RESET,
	    VM_SUSPEND_POWEROFF, VM_SUSPEND_HALT, VM_SUSPEND_TRIPLEFAULT };
	size_t i;

	for (i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
		CHECK(regs[i] == (int)i);
	for (i = 0; i < sizeof(exits) / sizeof(exits[0]); i++)
		CHECK(exits[i] == (int)i);
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		CHECK(caps[i] == (int)i);
	for (i = 0; i < sizeof(small) / sizeof(small[0]); i++)
		CHECK(small[i] == (int)i);
	CHECK(CPU_MODE_REAL == 0 && CPU_MODE_PROTECTED == 1);
	CHECK(CPU_MODE_COMPATIBILITY == 2);
	CHECK(PAGING_MODE_FLAT == 0 && PAGING_MODE_32 == 1);
	CHECK(PAGING_MODE_PAE == 2 && PAGING_MODE_64 == 3);
	CHECK(TSR_CALL == 0 && TSR_IRET == 1 && TSR_JMP == 2 && TSR_IDT_GATE == 3);
	CHECK(VM_SYSMEM == 0 && VM_BOOTROM == 1 && VM_FRAMEBUFFER == 2 && VM_PCIROM == 3);
	CHECK(VM_MEM_F_INCORE == 1 && VM_MEM_F_WIRED == 2);
	CHECK(VM_MAX_PREFIXLEN == 10 && VM_MIN_NAMELEN == 6);
	CHECK(VIE_INST_SIZE == 15 && MAX_VM_STATS == 64);
	CHECK(VMMAPI_VERSION == 0200);
	CHECK(VM_INTINFO_DEL_ERRCODE == 0x800 && VM_INTINFO_RSVD == 0x7ffff000);
	CHECK(VM_INTINFO_VALID == 0x80000000 && VM_INTINFO_TYPE == 0x700);
	CHECK(VM_INTINFO_HWINTR == 0 && VM_INTINFO_NMI == 0x200);
	CHECK(VM_INTINFO_HWEXCEPTION == 0x300 && VM_INTINFO_SWINTR == 0x400);
}

/*
 * FreeBSD declares `enum vcpu_state` only for its kernel; bhyve's gdb.c
 * has a `struct vcpu_state` of its own, which the header must leave free
 * (vmm_rs_vcpu_state() returns an enum vmm_rs_vcpu_run_state).
 */
struct vcpu_state {
	bool stepping;
};
_Static_assert(sizeof(struct vcpu_state) == sizeof(bool), "struct vcpu_state");
_Static_assert(VCPU_IDLE == 0 && VCPU_FROZEN == 1 && VCPU_RUNNING == 2 &&
    VCPU_SLEEPING == 3, "enum vmm_rs_vcpu_run_state");
_Static_assert(sizeof(enum vmm_rs_vcpu_run_state) == sizeof(int),
    "enum vmm_rs_vcpu_run_state");
/* The library reads these enum parameters (and writes the x2APIC state
 * through its pointer) as an int. */
_Static_assert(sizeof(enum vm_cap_type) == sizeof(int), "enum vm_cap_type");
_Static_assert(sizeof(enum vm_suspend_how) == sizeof(int), "enum vm_suspend_how");
_Static_assert(sizeof(enum vm_mmap_style) == sizeof(int), "enum vm_mmap_style");
_Static_assert(sizeof(enum vm_intr_trigger) == sizeof(int), "enum vm_intr_trigger");
_Static_assert(sizeof(enum x2apic_state) == sizeof(int), "enum x2apic_state");

/*
 * The libvmmapi calls have FreeBSD 14's vmmapi.h types, enum parameters
 * and the non-const iovec of vm_copyin / vm_copyout included, so that a
 * program's own declaration of one, or a function pointer of FreeBSD's
 * type, matches.
 */
#define CHECK_FN(fn, type) \
	_Static_assert(__builtin_types_compatible_p(__typeof__(&fn), type), #fn)
CHECK_FN(vm_create, int (*)(const char *));
CHECK_FN(vm_open, struct vmctx *(*)(const char *));
CHECK_FN(vm_close, void (*)(struct vmctx *));
CHECK_FN(vm_destroy, void (*)(struct vmctx *));
CHECK_FN(vm_limit_rights, int (*)(struct vmctx *));
CHECK_FN(vm_vcpu_open, struct vcpu *(*)(struct vmctx *, int));
CHECK_FN(vm_vcpu_close, void (*)(struct vcpu *));
CHECK_FN(vcpu_id, int (*)(struct vcpu *));
CHECK_FN(vm_get_memseg, int (*)(struct vmctx *, int, size_t *, char *, size_t));
CHECK_FN(vm_mmap_getnext, int (*)(struct vmctx *, vm_paddr_t *, int *,
    vm_ooffset_t *, size_t *, int *, int *));
CHECK_FN(vm_get_guestmem_from_ctx, int (*)(struct vmctx *, char **, size_t *, size_t *));
CHECK_FN(vm_create_devmem, void *(*)(struct vmctx *, int, const char *, size_t));
CHECK_FN(vm_mmap_memseg, int (*)(struct vmctx *, vm_paddr_t, int, vm_ooffset_t, size_t, int));
CHECK_FN(vm_munmap_memseg, int (*)(struct vmctx *, vm_paddr_t, size_t));
CHECK_FN(vm_parse_memsize, int (*)(const char *, size_t *));
CHECK_FN(vm_setup_memory, int (*)(struct vmctx *, size_t, enum vm_mmap_style));
CHECK_FN(vm_map_gpa, void *(*)(struct vmctx *, vm_paddr_t, size_t));
CHECK_FN(vm_rev_map_gpa, vm_paddr_t (*)(struct vmctx *, void *));
CHECK_FN(vm_get_gpa_pmap, int (*)(struct vmctx *, uint64_t, uint64_t *, int *));
CHECK_FN(vm_gla2gpa, int (*)(struct vcpu *, struct vm_guest_paging *, uint64_t, int, uint64_t *, int *));
CHECK_FN(vm_gla2gpa_nofault, int (*)(struct vcpu *, struct vm_guest_paging *, uint64_t, int, uint64_t *, int *));
CHECK_FN(vm_get_lowmem_limit, uint32_t (*)(struct vmctx *));
CHECK_FN(vm_set_lowmem_limit, void (*)(struct vmctx *, uint32_t));
CHECK_FN(vm_set_memflags, void (*)(struct vmctx *, int));
CHECK_FN(vm_get_memflags, int (*)(struct vmctx *));
CHECK_FN(vm_get_name, const char *(*)(struct vmctx *));
CHECK_FN(vm_get_lowmem_size, size_t (*)(struct vmctx *));
CHECK_FN(vm_get_highmem_size, size_t (*)(struct vmctx *));
CHECK_FN(vm_set_desc, int (*)(struct vcpu *, int, uint64_t, uint32_t, uint32_t));
CHECK_FN(vm_get_desc, int (*)(struct vcpu *, int, uint64_t *, uint32_t *, uint32_t *));
CHECK_FN(vm_get_seg_desc, int (*)(struct vcpu *, int, struct seg_desc *));
CHECK_FN(vm_set_register, int (*)(struct vcpu *, int, uint64_t));
CHECK_FN(vm_get_register, int (*)(struct vcpu *, int, uint64_t *));
CHECK_FN(vm_set_register_set, int (*)(struct vcpu *, unsigned int, const int *, uint64_t *));
CHECK_FN(vm_get_register_set, int (*)(struct vcpu *, unsigned int, const int *, uint64_t *));
CHECK_FN(vm_run, int (*)(struct vcpu *, struct vm_run *));
CHECK_FN(vm_suspend, int (*)(struct vmctx *, enum vm_suspend_how));
CHECK_FN(vm_reinit, int (*)(struct vmctx *));
CHECK_FN(vm_apicid2vcpu, int (*)(struct vmctx *, int));
CHECK_FN(vm_inject_exception, int (*)(struct vcpu *, int, int, uint32_t, int));
CHECK_FN(vm_lapic_irq, int (*)(struct vcpu *, int));
CHECK_FN(vm_lapic_local_irq, int (*)(struct vcpu *, int));
CHECK_FN(vm_lapic_msi, int (*)(struct vmctx *, uint64_t, uint64_t));
CHECK_FN(vm_ioapic_assert_irq, int (*)(struct vmctx *, int));
CHECK_FN(vm_ioapic_deassert_irq, int (*)(struct vmctx *, int));
CHECK_FN(vm_ioapic_pulse_irq, int (*)(struct vmctx *, int));
CHECK_FN(vm_ioapic_pincount, int (*)(struct vmctx *, int *));
CHECK_FN(vm_readwrite_kernemu_device, int (*)(struct vcpu *, vm_paddr_t, bool, int, uint64_t *));
CHECK_FN(vm_isa_assert_irq, int (*)(struct vmctx *, int, int));
CHECK_FN(vm_isa_deassert_irq, int (*)(struct vmctx *, int, int));
CHECK_FN(vm_isa_pulse_irq, int (*)(struct vmctx *, int, int));
CHECK_FN(vm_isa_set_irq_trigger, int (*)(struct vmctx *, int, enum vm_intr_trigger));
CHECK_FN(vm_inject_nmi, int (*)(struct vcpu *));
CHECK_FN(vm_capability_name2type, int (*)(const char *));
CHECK_FN(vm_capability_type2name, const char *(*)(int));
CHECK_FN(vm_get_capability, int (*)(struct vcpu *, enum vm_cap_type, int *));
CHECK_FN(vm_set_capability, int (*)(struct vcpu *, enum vm_cap_type, int));
CHECK_FN(vm_assign_pptdev, int (*)(struct vmctx *, int, int, int));
CHECK_FN(vm_unassign_pptdev, int (*)(struct vmctx *, int, int, int));
CHECK_FN(vm_map_pptdev_mmio, int (*)(struct vmctx *, int, int, int, vm_paddr_t, size_t, vm_paddr_t));
CHECK_FN(vm_unmap_pptdev_mmio, int (*)(struct vmctx *, int, int, int, vm_paddr_t, size_t));
CHECK_FN(vm_setup_pptdev_msi, int (*)(struct vmctx *, int, int, int, uint64_t, uint64_t, int));
CHECK_FN(vm_setup_pptdev_msix, int (*)(struct vmctx *, int, int, int, int, uint64_t, uint64_t, uint32_t));
CHECK_FN(vm_disable_pptdev_msix, int (*)(struct vmctx *, int, int, int));
CHECK_FN(vm_get_intinfo, int (*)(struct vcpu *, uint64_t *, uint64_t *));
CHECK_FN(vm_set_intinfo, int (*)(struct vcpu *, uint64_t));
CHECK_FN(vm_get_stats, uint64_t *(*)(struct vcpu *, struct timeval *, int *));
CHECK_FN(vm_get_stat_desc, const char *(*)(struct vmctx *, int));
CHECK_FN(vm_get_x2apic_state, int (*)(struct vcpu *, enum x2apic_state *));
CHECK_FN(vm_set_x2apic_state, int (*)(struct vcpu *, enum x2apic_state));
CHECK_FN(vm_get_hpet_capabilities, int (*)(struct vmctx *, uint32_t *));
CHECK_FN(vm_copy_setup, int (*)(struct vcpu *, struct vm_guest_paging *, uint64_t,
    size_t, int, struct iovec *, int, int *));
CHECK_FN(vm_copyin, void (*)(struct iovec *, void *, size_t));
CHECK_FN(vm_copyout, void (*)(const void *, struct iovec *, size_t));
CHECK_FN(vm_copy_teardown, void (*)(struct iovec *, int));
CHECK_FN(vm_rtc_write, int (*)(struct vmctx *, int, uint8_t));
CHECK_FN(vm_rtc_read, int (*)(struct vmctx *, int, uint8_t *));
CHECK_FN(vm_rtc_settime, int (*)(struct vmctx *, time_t));
CHECK_FN(vm_rtc_gettime, int (*)(struct vmctx *, time_t *));
CHECK_FN(vcpu_reset, int (*)(struct vcpu *));
CHECK_FN(vm_active_cpus, int (*)(struct vmctx *, cpuset_t *));
CHECK_FN(vm_suspended_cpus, int (*)(struct vmctx *, cpuset_t *));
CHECK_FN(vm_debug_cpus, int (*)(struct vmctx *, cpuset_t *));
CHECK_FN(vm_activate_cpu, int (*)(struct vcpu *));
CHECK_FN(vm_suspend_all_cpus, int (*)(struct vmctx *));
CHECK_FN(vm_suspend_cpu, int (*)(struct vcpu *));
CHECK_FN(vm_resume_all_cpus, int (*)(struct vmctx *));
CHECK_FN(vm_resume_cpu, int (*)(struct vcpu *));
CHECK_FN(vm_restart_instruction, int (*)(struct vcpu *));
CHECK_FN(vm_set_topology, int (*)(struct vmctx *, uint16_t, uint16_t, uint16_t, uint16_t));
CHECK_FN(vm_get_topology, int (*)(struct vmctx *, uint16_t *, uint16_t *, uint16_t *, uint16_t *));
CHECK_FN(vm_setup_freebsd_registers, int (*)(struct vcpu *, uint64_t, uint64_t, uint64_t, uint64_t));
CHECK_FN(vm_setup_freebsd_registers_i386, int (*)(struct vcpu *, uint32_t, uint32_t, uint32_t));
CHECK_FN(vm_setup_freebsd_gdt, void (*)(uint64_t *));
CHECK_FN(vm_get_ioctls, const unsigned long *(*)(size_t *));
CHECK_FN(vm_inject_fault, void (*)(struct vcpu *, int, int, int));

/*
 * FreeBSD 14's <machine/vmm_instruction_emul.h> (userland): declared, not
 * defined, by vmm_rs; bhyve builds the emulator from FreeBSD's source.
 */
CHECK_FN(vmm_emulate_instruction, int (*)(struct vcpu *, uint64_t,
    struct vie *, struct vm_guest_paging *, mem_region_read_t,
    mem_region_write_t, void *));
CHECK_FN(vie_update_register, int (*)(struct vcpu *, enum vm_reg_name,
    uint64_t, int));
CHECK_FN(vie_alignment_check, int (*)(int, int, uint64_t, uint64_t,
    uint64_t));
CHECK_FN(vie_canonical_check, int (*)(enum vm_cpu_mode, uint64_t));
CHECK_FN(vie_size2mask, uint64_t (*)(int));
CHECK_FN(vie_calculate_gla, int (*)(enum vm_cpu_mode, enum vm_reg_name,
    struct seg_desc *, uint64_t, int, int, int, uint64_t *));
CHECK_FN(vie_restart, void (*)(struct vie *));
CHECK_FN(vie_init, void (*)(struct vie *, const char *, int));
CHECK_FN(vmm_decode_instruction, int (*)(enum vm_cpu_mode, int,
    struct vie *));
_Static_assert(__builtin_types_compatible_p(mem_region_read_t,
    int (*)(struct vcpu *, uint64_t, uint64_t *, int, void *)),
    "mem_region_read_t");
_Static_assert(__builtin_types_compatible_p(mem_region_write_t,
    int (*)(struct vcpu *, uint64_t, uint64_t, int, void *)),
    "mem_region_write_t");
/* FreeBSD 14's vmm_instruction_emul.c declares the opcode types itself. */
enum { VIE_OP_TYPE_NONE = 0, VIE_OP_TYPE_MOV };
_Static_assert(offsetof(struct vie, vie_startzero) == 16, "vie_startzero");
_Static_assert(PROT_READ != 0 && PROT_WRITE != 0,
    "<sys/mman.h>, which vmm_instruction_emul.h includes");

int
main(void)
{
	check_sizes();
	check_vmm_h_helpers();
	check_offsets();
	check_more_offsets();
	check_bitfields();
	check_enums();
	check_all_enum_values();
	check_ioctls();
	return test_finish("abi_test");
}
