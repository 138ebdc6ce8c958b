/*
 * Task switches as bhyve's vmexit_task_switch receives them: a guest's
 * CALL, JMP or IRET to a TSS, and an interrupt delivered through a task
 * gate of the guest's IDT (protected mode, the IDT in guest RAM), exit
 * with VM_EXITCODE_TASK_SWITCH and struct vm_task_switch filled as
 * FreeBSD's VMX exit handler fills it; the gated event waits in the exit
 * intinfo until userland clears it.
 */
#include "vmm_rs.h"
#include "test_util.h"

#define OUT(p) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1 }
#define ACT(k) { .kind = (k) }
#define SWITCH(sel, why) { .kind = VMM_RS_ACT_TASK_SWITCH, .value = (sel), .size = (why) }

#define IDT 0x3000
#define INTINFO_VALID (1ULL << 31)

static struct vm_exit vme;
static struct vm_run vmrun = { .vm_exit = &vme };

/* Writes an IDT entry: a task gate for `tss` (access 0x85) or another gate. */
static void
idt_entry(struct vmctx *ctx, int vector, uint16_t sel, uint8_t access)
{
	unsigned char d[8] = { 0, 0, (unsigned char)sel, (unsigned char)(sel >> 8), 0, access, 0, 0 };
	void *p = vm_map_gpa(ctx, IDT + 8 * vector, 8);
	CHECK(p != NULL);
	if (p != NULL)
		memcpy(p, d, 8);
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;
	struct vmm_rs_guest_stats gs;
	uint64_t info1 = 0, info2 = 0;

	watchdog_start(60, "task_switch_test");
	CHECK_OK(vm_create("task_switch"));
	ctx = vm_open("task_switch");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("task_switch_test");
	CHECK_OK(vm_setup_memory(ctx, 1 << 20, VM_MMAP_ALL));
	idt_entry(ctx, 0x41, 0x30, 0x85);
	idt_entry(ctx, 0x51, 0x08, 0x8e); /* an interrupt gate */
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_CR0, 0x11)); /* protected mode */
	CHECK_OK(vm_set_desc(v, VM_REG_GUEST_IDTR, IDT, 0x7ff, 0));

	struct vmm_rs_action guest[] = {
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0xfee000f0, .size = 4, .value = 0x1ff },
		SWITCH(0x28, TSR_CALL),
		SWITCH(0x20, TSR_IRET),
		ACT(VMM_RS_ACT_STI),
		ACT(VMM_RS_ACT_COMPUTE),
		ACT(VMM_RS_ACT_COMPUTE),
		OUT(0x80),
	};
	CHECK_OK(vmm_rs_guest_set_script(v, guest, 7, 3));

	/* CALL to a TSS: at the instruction, with the paging state. */
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_TASK_SWITCH);
	CHECK(vme.u.task_switch.tsssel == 0x28 && vme.u.task_switch.reason == TSR_CALL);
	CHECK(vme.u.task_switch.ext == 0 && vme.u.task_switch.errcode_valid == 0);
	CHECK(vme.rip == 1 && vme.inst_length == 1);
	CHECK(vme.u.task_switch.paging.cpu_mode == CPU_MODE_PROTECTED);
	CHECK(vme.u.task_switch.paging.paging_mode == PAGING_MODE_FLAT);
	/* Userland would load the new task; the guest goes on after it. */
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_TASK_SWITCH && vme.u.task_switch.reason == TSR_IRET);
	CHECK(vme.u.task_switch.tsssel == 0x20 && vme.rip == 2);
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);

	/* An interrupt through the task gate. */
	CHECK_OK(vm_lapic_irq(v, 0x41));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_TASK_SWITCH);
	CHECK(vme.u.task_switch.reason == TSR_IDT_GATE && vme.u.task_switch.tsssel == 0x30);
	CHECK(vme.u.task_switch.ext == 1 && vme.u.task_switch.errcode_valid == 0);
	CHECK(vme.inst_length == 0);
	CHECK(vme.u.task_switch.paging.cpu_mode == CPU_MODE_PROTECTED);
	CHECK_OK(vm_get_intinfo(v, &info1, &info2));
	CHECK(info1 == (INTINFO_VALID | 0x41)); /* the event, pending */
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.interrupts == 0);
	CHECK_OK(vm_set_intinfo(v, 0)); /* what bhyve does once it has switched */
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);
	CHECK_OK(vm_get_intinfo(v, &info1, &info2));
	CHECK(info1 == 0);

	/* An NMI through a task gate: external, pending in the intinfo. */
	idt_entry(ctx, 2, 0x40, 0x85);
	CHECK_OK(vm_inject_nmi(v));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_TASK_SWITCH && vme.u.task_switch.reason == TSR_IDT_GATE);
	CHECK(vme.u.task_switch.tsssel == 0x40 && vme.u.task_switch.ext == 1);
	CHECK_OK(vm_get_intinfo(v, &info1, &info2));
	CHECK(info1 == (INTINFO_VALID | (2 << 8) | 2));
	CHECK_OK(vm_set_intinfo(v, 0));

	/* The new task EOIs; an interrupt gate delivers as usual. */
	struct vmm_rs_action eoi[] = {
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0xfee000b0, .size = 4 },
		ACT(VMM_RS_ACT_STI), ACT(VMM_RS_ACT_COMPUTE), ACT(VMM_RS_ACT_COMPUTE), OUT(0x81),
	};
	CHECK_OK(vmm_rs_guest_set_script(v, eoi, 5, 1));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK_OK(vm_lapic_irq(v, 0x51));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x81);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_vector == 0x51);

	/* Malformed: the IDT-gate reason is the processor's, selectors have 16 bits. */
	struct vmm_rs_action bad1[] = { SWITCH(0x28, TSR_IDT_GATE) };
	struct vmm_rs_action bad2[] = { SWITCH(0x10000, TSR_JMP) };
	CHECK_ERR(vmm_rs_guest_set_script(v, bad1, 1, -1), EINVAL);
	CHECK_ERR(vmm_rs_guest_set_script(v, bad2, 1, -1), EINVAL);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("task_switch_test");
}
