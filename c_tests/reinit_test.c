/*
 * VM_REINIT as a bhyve user meets it (bhyve's reset: VM_SUSPEND_RESET,
 * every vCPU sees SUSPENDED, then vm_reinit): the vCPUs are inactive
 * until activated again, their registers are reset (DR6 and DR7 to their
 * power-on values, as a new vCPU's), guest RAM keeps its
 * contents, and a simulated guest starts over (a script from its first
 * action, a callback guest from rip 0, even one that had ended). A
 * vm_reinit before every vCPU has acknowledged the suspend is EBUSY, also
 * while a vCPU waits for the others inside VM_RUN.
 */
#include "apic_util.h"

#define OUT(p) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1 }

/* A callback guest: OUT 0x90 at rip 0, then it ends (non-zero). */
static uint64_t first_rips[4];
static int nexts;

static int
ending_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = OUT(0x90);
	(void)cookie;
	(void)vcpuid;
	if (nexts < 4)
		first_rips[nexts] = rip;
	nexts++;
	*a = out;
	return rip == 0 ? 0 : 1;
}

/* VM_SUSPEND_RESET, acknowledged, then vm_reinit. */
static void
reset(struct vmctx *ctx, struct vcpu *v)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED && vme.u.suspended.how == VM_SUSPEND_RESET);
	CHECK_OK(vm_reinit(ctx));
}

/* vCPU 1 of "reinit2": one VM_RUN on its own thread. */
static struct vm_exit v1_exit;

static void *
run_v1(void *arg)
{
	struct vm_run vmrun = { .vm_exit = &v1_exit };
	CHECK_OK(vm_run(arg, &vmrun));
	return NULL;
}

/* Starts run_v1 and returns once vCPU 1 has acknowledged the suspend. */
static pthread_t
v1_waiting_in_suspend(struct vmctx *ctx, struct vcpu *v1)
{
	pthread_t t;
	cpuset_t set;
	CHECK(pthread_create(&t, NULL, run_v1, v1) == 0);
	do {
		sched_yield();
		CHECK_OK(vm_suspended_cpus(ctx, &set));
	} while (!(set.__bits[0] & 2));
	return t;
}

/*
 * A vm_reinit while one vCPU waits in VM_RUN for the other to acknowledge
 * the suspend is refused (EBUSY); the waiting vCPU gives way with REQIDLE.
 * It used to hang: the lock-all froze vCPU 0, then waited for vCPU 1,
 * which waited for vCPU 0.
 */
static void
reinit_before_every_vcpu_acknowledged(void)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	watchdog_phase("reinit before every vCPU acknowledged the suspend");
	CHECK_OK(vm_create("reinit2"));
	struct vmctx *ctx = vm_open("reinit2");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return;
	struct vcpu *v0 = vm_vcpu_open(ctx, 0), *v1 = vm_vcpu_open(ctx, 1);
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_activate_cpu(v1));
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));

	pthread_t t = v1_waiting_in_suspend(ctx, v1);
	CHECK_ERR(vm_reinit(ctx), EBUSY);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(v1_exit.exitcode == VM_EXITCODE_REQIDLE);

	t = v1_waiting_in_suspend(ctx, v1);
	CHECK_OK(vm_run(v0, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED && vme.u.suspended.how == VM_SUSPEND_RESET);
	CHECK(pthread_join(t, NULL) == 0);
	CHECK(v1_exit.exitcode == VM_EXITCODE_SUSPENDED);
	CHECK_OK(vm_reinit(ctx));
	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
}

int
main(void)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct vmm_rs_action script[] = { OUT(0x90), OUT(0x91) };
	uint64_t rbx = 0, dr6 = 0, dr7 = 0;

	watchdog_start(30, "reinit_test");
	CHECK_OK(vm_create("reinit"));
	struct vmctx *ctx = vm_open("reinit");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("reinit_test");
	struct vcpu *v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_setup_memory(ctx, 1 << 20, VM_MMAP_ALL));
	char *ram = vm_map_gpa(ctx, 0x1000, 16);
	CHECK(ram != NULL);
	if (ram == NULL)
		return test_finish("reinit_test");
	memcpy(ram, "kept", 5);
	CHECK_OK(vm_activate_cpu(v));
	CHECK_OK(vmm_rs_guest_set_script(v, script, 2, -1));
	/* DR6 and DR7 start at their power-on values (FreeBSD's backends
	 * set them for a new vCPU), and come back to them at VM_REINIT. */
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_DR6, &dr6));
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_DR7, &dr7));
	CHECK(dr6 == 0xffff0ff0 && dr7 == 0x400);
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_DR6, 0));
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_DR7, 0x401));
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RBX, 0x1234));
	run_to_out(v, 0x90, &vme);

	reset(ctx, v);
	CHECK_ERR(vm_run(v, &vmrun), EINVAL); /* inactive until activated */
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RBX, &rbx));
	CHECK(rbx == 0);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_DR6, &dr6));
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_DR7, &dr7));
	CHECK(dr6 == 0xffff0ff0 && dr7 == 0x400);
	CHECK(memcmp(ram, "kept", 5) == 0);
	CHECK(vm_map_gpa(ctx, 0x1000, 16) == ram);
	CHECK_OK(vm_activate_cpu(v));
	run_to_out(v, 0x90, &vme); /* the script started over */
	CHECK(vme.rip == 0);
	run_to_out(v, 0x91, &vme);

	/* A callback guest that ended is asked again after the reset. */
	struct vmm_rs_guest_ops ops = { .next = ending_next };
	CHECK_OK(vmm_rs_guest_set_ops(v, &ops, NULL));
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RIP, 0));
	run_to_out(v, 0x90, &vme);
	CHECK_OK(vm_run(v, &vmrun)); /* it ends: cli; hlt for good */
	CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED && vme.u.suspended.how == VM_SUSPEND_HALT);
	CHECK_OK(vm_reinit(ctx));
	CHECK_OK(vm_activate_cpu(v));
	run_to_out(v, 0x90, &vme);
	CHECK(nexts == 3 && first_rips[0] == 0 && first_rips[1] == 1 && first_rips[2] == 0);
	vm_vcpu_close(v);
	vm_destroy(ctx);

	reinit_before_every_vcpu_acknowledged();
	return test_finish("reinit_test");
}
