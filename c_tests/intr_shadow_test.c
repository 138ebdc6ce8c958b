/*
 * VM_REG_GUEST_INTR_SHADOW is the guest's STI interrupt shadow, as on
 * FreeBSD 14 (Intel):
 *  1. writing a non-zero value is EINVAL (vmx_modify_intr_shadow: a vCPU
 *     cannot be forced into an interrupt shadow), through VM_SET_REGISTER
 *     and VM_SET_REGISTER_SET; writing 0 succeeds;
 *  2. an NMI raised while the guest is in the shadow waits for the
 *     instruction after the STI and comes right after it (FreeBSD holds
 *     it: NMI-window exiting), not before it and not at a later exit;
 *  3. an exit taken by the instruction in the shadow reads 1 (VMCS guest
 *     interruptibility), through VM_GET_REGISTER and VM_GET_REGISTER_SET;
 *     a write of 0 ends it, and so does resuming past that instruction.
 */
#include "apic_util.h"

static struct vcpu *gv;
static char logbuf[256];
static int loglen;

static void
logs(const char *s)
{
	loglen += snprintf(logbuf + loglen, sizeof(logbuf) - loglen, "%s ", s);
}

/* CLI, STI (raising an NMI), COMPUTE, OUT 0x80, then halts. */
static int
g_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	(void)cookie; (void)vcpuid;
	memset(a, 0, sizeof(*a));
	char b[16];
	snprintf(b, sizeof b, "next%d", (int)rip);
	logs(b);
	switch (rip) {
	case 0: a->kind = VMM_RS_ACT_CLI; break;
	case 1:
		a->kind = VMM_RS_ACT_STI;
		CHECK_OK(vm_inject_nmi(gv));
		break;
	case 2: a->kind = VMM_RS_ACT_COMPUTE; break;
	case 3: a->kind = VMM_RS_ACT_PORT_OUT; a->port = 0x80; a->size = 1; break;
	default: return 1;
	}
	return 0;
}

static void
g_intr(void *cookie, int vcpuid, int vector)
{
	(void)cookie; (void)vcpuid;
	char b[16];
	snprintf(b, sizeof b, "vec%d", vector);
	logs(b);
}

static uint64_t
get_reg_set(struct vcpu *v, int r)
{
	int regnums[2] = { VM_REG_GUEST_RAX, r };
	uint64_t vals[2] = { 0, 0 };
	CHECK_OK(vm_get_register_set(v, 2, regnums, vals));
	return vals[1];
}

/* CLI, STI, OUT 0x81 (in the shadow), OUT 0x80. */
static void
run_to_shadowed_out(struct vcpu *v)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct vmm_rs_action prog[4] = {
		{ .kind = VMM_RS_ACT_CLI }, { .kind = VMM_RS_ACT_STI },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x81, .size = 1 },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 },
	};
	CHECK_OK(vmm_rs_guest_set_script(v, prog, 4, -1));
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RIP, 0));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x81);
}

int
main(void)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	watchdog_start(30, "intr_shadow_test");
	vm_destroy(vm_open("intrshadow"));
	CHECK_OK(vm_create("intrshadow"));
	struct vmctx *ctx = vm_open("intrshadow");
	struct vcpu *v = vm_vcpu_open(ctx, 0);
	gv = v;
	CHECK_OK(vm_activate_cpu(v));

	/* 1 */
	watchdog_phase("set");
	CHECK(get_reg(v, VM_REG_GUEST_INTR_SHADOW) == 0);
	CHECK_ERR(vm_set_register(v, VM_REG_GUEST_INTR_SHADOW, 1), EINVAL);
	{
		int regnums[2] = { VM_REG_GUEST_RBX, VM_REG_GUEST_INTR_SHADOW };
		uint64_t vals[2] = { 0x1234, 1 };
		CHECK_ERR(vm_set_register_set(v, 2, regnums, vals), EINVAL);
		CHECK(get_reg(v, VM_REG_GUEST_RBX) == 0x1234);
	}
	CHECK(get_reg(v, VM_REG_GUEST_INTR_SHADOW) == 0);
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_INTR_SHADOW, 0));

	/* 2 */
	watchdog_phase("nmi");
	{
		struct vmm_rs_guest_ops ops = { .next = g_next, .interrupt = g_intr };
		CHECK_OK(vmm_rs_guest_set_ops(v, &ops, NULL));
		CHECK_OK(vm_set_register(v, VM_REG_GUEST_RIP, 0));
		CHECK_OK(vm_run(v, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);
		printf("order: %s\n", logbuf);
		CHECK(strcmp(logbuf, "next0 next1 next2 vec2 next3 ") == 0);
	}

	/* 3 */
	watchdog_phase("read");
	run_to_shadowed_out(v);
	CHECK(get_reg(v, VM_REG_GUEST_INTR_SHADOW) == 1);
	CHECK(get_reg_set(v, VM_REG_GUEST_INTR_SHADOW) == 1);
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_INTR_SHADOW, 0));
	CHECK(get_reg(v, VM_REG_GUEST_INTR_SHADOW) == 0);
	/* Resumed past the OUT, the guest is out of the shadow. */
	run_to_shadowed_out(v);
	CHECK(get_reg(v, VM_REG_GUEST_INTR_SHADOW) == 1);
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);
	CHECK(get_reg(v, VM_REG_GUEST_INTR_SHADOW) == 0);

	/* 4 */
	watchdog_phase("reset");
	/* vcpu_reset ends the shadow, as libvmmapi's sets it to 0. */
	run_to_shadowed_out(v);
	CHECK(get_reg(v, VM_REG_GUEST_INTR_SHADOW) == 1);
	CHECK_OK(vcpu_reset(v));
	CHECK(get_reg(v, VM_REG_GUEST_INTR_SHADOW) == 0);

	vm_destroy(ctx);
	return test_finish("intr_shadow_test");
}
