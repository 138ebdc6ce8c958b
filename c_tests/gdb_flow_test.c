/*
 * What bhyve's gdb stub (usr.sbin/bhyve/gdb.c) does to a vCPU, against a
 * callback guest whose code is at its RIP (action `rip`):
 *  - stop it (vm_suspend_cpu: VM_EXITCODE_DEBUG) and read its PC, which
 *    is where it resumes, so writing the PC back re-runs nothing;
 *  - hand the guest its own INT3 (BPT exit, then the entry instruction
 *    length 1 and #BP injected): taken once, the guest goes on past it;
 *  - single-step with an interrupt pending: the step that delivers it
 *    runs no instruction (the monitor trap flag's exit comes first);
 *  - inject a fault with restart_instruction (bhyve's vm_inject_fault):
 *    the guest takes it, then re-runs the instruction that exited.
 */
#include "apic_util.h"

#define OUTP 0x80

/* The guest's code: COMPUTE, OUT, INT3, OUT, COMPUTE..., OUT at 9 and 10. */
static int vectors[8], nvectors;

static int
code_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	(void)cookie;
	(void)vcpuid;
	memset(a, 0, sizeof(*a));
	switch (rip) {
	case 1: case 3: case 9: case 10:
		a->kind = VMM_RS_ACT_PORT_OUT;
		a->port = OUTP;
		a->size = 1;
		a->value = rip;
		break;
	case 2:
		a->kind = VMM_RS_ACT_INT3;
		break;
	default:
		a->kind = VMM_RS_ACT_COMPUTE;
	}
	return 0;
}

static void
code_interrupt(void *cookie, int vcpuid, int vector)
{
	(void)cookie;
	(void)vcpuid;
	if (nvectors < 8)
		vectors[nvectors++] = vector;
}

int
main(void)
{
	struct vmm_rs_guest_ops ops = { .next = code_next, .interrupt = code_interrupt };
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	watchdog_start(30, "gdb_flow_test");
	CHECK_OK(vm_create("gdbflow"));
	struct vmctx *ctx = vm_open("gdbflow");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("gdb_flow_test");
	struct vcpu *v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));
	CHECK_OK(vmm_rs_guest_set_ops(v, &ops, NULL));

	/* Stop after the OUT at 1: the PC reads 2, and writing it back
	 * (gdb's P packet) runs nothing twice. */
	run_to_out(v, OUTP, &vme);
	CHECK(vme.rip == 1);
	CHECK_OK(vm_suspend_cpu(v));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_DEBUG && vme.rip == 2);
	CHECK(get_reg(v, VM_REG_GUEST_RIP) == 2);
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RIP, get_reg(v, VM_REG_GUEST_RIP)));
	CHECK_OK(vm_restart_instruction(v)); /* nothing to restart here */
	CHECK_OK(vm_resume_cpu(v));

	/* The guest's own INT3 at 2, with breakpoints exiting. */
	CHECK_OK(vm_set_capability(v, VM_CAP_BPT_EXIT, 1));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_BPT && vme.rip == 2 && vme.u.bpt.inst_length == 1);
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_ENTRY_INST_LENGTH, vme.u.bpt.inst_length));
	CHECK_OK(vm_inject_exception(v, 3, 0, 0, 0));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.rip == 3);
	CHECK(nvectors == 1 && vectors[0] == 3);
	CHECK_OK(vm_set_capability(v, VM_CAP_BPT_EXIT, 0));

	/* A step from 4 runs the COMPUTE there; with an NMI pending, the
	 * next step delivers it at 5 and runs nothing; the one after runs 5. */
	CHECK_OK(vm_set_capability(v, VM_CAP_MTRAP_EXIT, 1));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_MTRAP && vme.rip == 5);
	CHECK_OK(vm_inject_nmi(v));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_MTRAP && vme.rip == 5);
	CHECK(nvectors == 2 && vectors[1] == 2);
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_MTRAP && vme.rip == 6);
	CHECK_OK(vm_set_capability(v, VM_CAP_MTRAP_EXIT, 0));
	run_to_out(v, OUTP, &vme);
	CHECK(vme.rip == 9);

	/* #GP with restart_instruction: taken, then the OUT at 9 runs again
	 * (without the restart the guest would go on to the OUT at 10). */
	CHECK_OK(vm_inject_exception(v, 13, 0, 0, 1));
	run_to_out(v, OUTP, &vme);
	CHECK(vme.rip == 9);
	CHECK(nvectors == 3 && vectors[2] == 13);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("gdb_flow_test");
}
