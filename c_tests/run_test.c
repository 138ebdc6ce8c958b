/*
 * VM_RUN and the vCPU locking protocol: argument checks, the debug set, a
 * lock-all ioctl that waits for a vCPU inside VM_RUN to leave (REQIDLE),
 * suspend of a running VM, and VM_REINIT. The default backend's guest is
 * an idle loop (sti; hlt): VM_RUN sleeps until something needs the caller.
 */
#include <pthread.h>
#include <sched.h>

#include "vmm_rs.h"
#include "test_util.h"

struct runner {
	struct vcpu *vcpu;
	int rc;
	int err;
	struct vm_exit exit;
	int stop_on; /* exit code that ends the loop, or -1: return after one */
};

static void *
run_thread(void *p)
{
	struct runner *r = p;
	struct vm_run vmrun = { .vm_exit = &r->exit };
	for (;;) {
		r->rc = vm_run(r->vcpu, &vmrun);
		r->err = errno;
		if (r->rc != 0 || r->stop_on < 0 || r->exit.exitcode == r->stop_on)
			break;
	}
	return NULL;
}

/* Waits, without sleeping, until the vCPU reaches `state`. */
static void
wait_state(struct vcpu *v, int state)
{
	while (vmm_rs_vcpu_state(v) != state)
		sched_yield();
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v0, *v1;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	pthread_t t0, t1;

	watchdog_start(60, "run_test (a lock-all or suspend did not complete)");
	CHECK_OK(vm_create("run"));
	ctx = vm_open("run");
	v0 = vm_vcpu_open(ctx, 0);
	v1 = vm_vcpu_open(ctx, 1);

	/* Argument checks. */
	CHECK_ERR(vm_run(v0, &vmrun), EINVAL); /* not active */
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_activate_cpu(v1));
	CHECK_ERR(vm_run(v0, NULL), EFAULT);
	vmrun.vm_exit = NULL;
	CHECK_ERR(vm_run(v0, &vmrun), EFAULT);
	vmrun.vm_exit = &vme;
	CHECK(vmm_rs_vcpu_state(v0) == VCPU_IDLE);

	/* A vCPU in the debug set returns VM_EXITCODE_DEBUG. */
	CHECK_OK(vm_suspend_cpu(v0));
	CHECK_OK(vm_run(v0, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_DEBUG);
	CHECK_OK(vm_resume_cpu(v0));

	/* A debugger's single step: with VM_CAP_MTRAP_EXIT every instruction
	 * is a VM_EXITCODE_MTRAP at the next RIP (inst_length 0). */
	{
		struct vmm_rs_action step[] = { { .kind = VMM_RS_ACT_COMPUTE }, { .kind = VMM_RS_ACT_COMPUTE } };
		uint64_t rip0;
		int cap = -1;
		CHECK_OK(vmm_rs_guest_set_script(v0, step, 2, 0));
		CHECK_OK(vm_set_capability(v0, VM_CAP_MTRAP_EXIT, 1));
		CHECK_OK(vm_get_capability(v0, VM_CAP_MTRAP_EXIT, &cap));
		CHECK(cap == 1);
		CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RIP, &rip0));
		for (uint64_t i = 1; i <= 3; i++) {
			CHECK_OK(vm_run(v0, &vmrun));
			CHECK(vme.exitcode == VM_EXITCODE_MTRAP && vme.rip == rip0 + i && vme.inst_length == 0);
		}
		/* As bhyve's gdb stub steps: VM_CAP_MASK_HWINTR holds even an
		 * NMI back until stepping ends. */
		struct vmm_rs_guest_stats gs;
		CHECK_OK(vm_set_capability(v0, VM_CAP_MASK_HWINTR, 1));
		CHECK_OK(vm_inject_nmi(v0));
		CHECK_OK(vm_run(v0, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_MTRAP);
		CHECK_OK(vmm_rs_guest_stats(v0, &gs));
		CHECK(gs.interrupts == 0);
		CHECK_OK(vm_set_capability(v0, VM_CAP_MASK_HWINTR, 0));
		CHECK_OK(vm_run(v0, &vmrun));
		CHECK_OK(vmm_rs_guest_stats(v0, &gs));
		CHECK(gs.interrupts == 1 && gs.last_vector == 2);
		CHECK_OK(vm_set_capability(v0, VM_CAP_MTRAP_EXIT, 0));
		/* bhyve's gdb stub on AMD: VM_CAP_RFLAGS_TF sets RFLAGS.TF and each
		 * instruction's #DB is VM_EXITCODE_DB (trace_trap) at the next RIP;
		 * turned off, the guest's own TF is back. */
		uint64_t rflags = 0;
		CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RFLAGS, &rflags));
		CHECK((rflags & 0x100) == 0);
		CHECK_OK(vm_set_capability(v0, VM_CAP_RFLAGS_TF, 1));
		CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RFLAGS, &rflags));
		CHECK(rflags & 0x100);
		CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RIP, &rip0));
		for (uint64_t i = 1; i <= 2; i++) {
			CHECK_OK(vm_run(v0, &vmrun));
			CHECK(vme.exitcode == VM_EXITCODE_DB && vme.u.dbg.trace_trap == 1 &&
			    vme.u.dbg.pushf_intercept == 0 && vme.rip == rip0 + i && vme.inst_length == 0);
		}
		CHECK_OK(vm_set_capability(v0, VM_CAP_RFLAGS_TF, 0));
		CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RFLAGS, &rflags));
		CHECK((rflags & 0x100) == 0);
		/* A breakpoint: INT3 with VM_CAP_BPT_EXIT is VM_EXITCODE_BPT at
		 * its RIP, the one-byte length in u.bpt. */
		struct vmm_rs_action brk[] = { { .kind = VMM_RS_ACT_INT3 }, { .kind = VMM_RS_ACT_COMPUTE } };
		CHECK_OK(vmm_rs_guest_set_script(v0, brk, 2, 1));
		CHECK_OK(vm_set_capability(v0, VM_CAP_BPT_EXIT, 1));
		CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RIP, &rip0));
		CHECK_OK(vm_run(v0, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_BPT && vme.rip == rip0 && vme.inst_length == 0 &&
		    vme.u.bpt.inst_length == 1);
		CHECK_OK(vm_set_capability(v0, VM_CAP_BPT_EXIT, 0));
		CHECK_OK(vmm_rs_guest_clear(v0));
	}

	/*
	 * HLT without VM_CAP_HALT_EXIT (bhyve without -H): no exit, the guest
	 * halts where it is. A debug exit meanwhile leaves it halted; the
	 * interrupt that ends the HLT brings it on to its OUT, and no HLT
	 * exit is counted.
	 */
	{
		struct vmm_rs_action prog[] = {
			{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0xfee000f0, .size = 4, .value = 0x1ff },
			{ .kind = VMM_RS_ACT_STI },
			{ .kind = VMM_RS_ACT_HLT },
			{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x4e, .size = 1, .value = 7 },
		};
		struct vmm_rs_guest_stats gs;
		CHECK_OK(vmm_rs_guest_set_script(v0, prog, 4, 1));
		CHECK_OK(vm_set_capability(v0, VM_CAP_HALT_EXIT, 0));
		struct runner r = { .vcpu = v0, .stop_on = -1 };
		pthread_create(&t0, NULL, run_thread, &r);
		wait_state(v0, VCPU_SLEEPING);
		CHECK_OK(vm_suspend_cpu(v0));
		pthread_join(t0, NULL);
		CHECK(r.rc == 0 && r.exit.exitcode == VM_EXITCODE_DEBUG);
		CHECK_OK(vm_resume_cpu(v0));
		r = (struct runner){ .vcpu = v0, .stop_on = -1 };
		pthread_create(&t0, NULL, run_thread, &r);
		wait_state(v0, VCPU_SLEEPING);
		CHECK_OK(vm_lapic_irq(v0, 0x40));
		pthread_join(t0, NULL);
		CHECK(r.rc == 0 && r.exit.exitcode == VM_EXITCODE_INOUT && r.exit.u.inout.port == 0x4e);
		CHECK_OK(vmm_rs_guest_stats(v0, &gs));
		CHECK(gs.interrupts == 1 && gs.last_vector == 0x40);
		int hlt = stat_index(ctx, "number of times hlt was intercepted"), n = 0;
		uint64_t *st = vm_get_stats(v0, NULL, &n);
		CHECK(hlt >= 0 && st != NULL && st[hlt] == 0);
		CHECK_OK(vm_set_capability(v0, VM_CAP_HALT_EXIT, 1));
		CHECK_OK(vmm_rs_guest_clear(v0));
	}

	/*
	 * Lock-all vs. a vCPU inside VM_RUN: VM_REINIT freezes every vCPU
	 * before checking; vCPU 0 is asleep in its guest's HLT, so the
	 * lock-all must ask it to leave (REQIDLE) and wait until it has.
	 */
	struct runner r0 = { .vcpu = v0, .stop_on = -1 };
	pthread_create(&t0, NULL, run_thread, &r0);
	wait_state(v0, VCPU_SLEEPING);
	CHECK_ERR(vm_reinit(ctx), EBUSY); /* lock-all; refused: not suspended */
	pthread_join(t0, NULL);
	CHECK(r0.rc == 0 && r0.exit.exitcode == VM_EXITCODE_REQIDLE);
	CHECK(vmm_rs_vcpu_state(v0) == VCPU_IDLE);

	/* A lock-one ioctl from another thread does the same. */
	r0 = (struct runner){ .vcpu = v0, .stop_on = -1 };
	pthread_create(&t0, NULL, run_thread, &r0);
	wait_state(v0, VCPU_SLEEPING);
	uint64_t rip;
	CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RIP, &rip));
	pthread_join(t0, NULL);
	CHECK(r0.rc == 0 && r0.exit.exitcode == VM_EXITCODE_REQIDLE);

	/* Suspend a running VM: every vCPU returns VM_EXITCODE_SUSPENDED. */
	CHECK_OK(vm_set_register(v0, VM_REG_GUEST_RAX, 0x1234));
	struct runner a = { .vcpu = v0, .stop_on = VM_EXITCODE_SUSPENDED };
	struct runner b = { .vcpu = v1, .stop_on = VM_EXITCODE_SUSPENDED };
	pthread_create(&t0, NULL, run_thread, &a);
	pthread_create(&t1, NULL, run_thread, &b);
	wait_state(v0, VCPU_SLEEPING);
	wait_state(v1, VCPU_SLEEPING);
	CHECK_ERR(vm_suspend(ctx, VM_SUSPEND_NONE), EINVAL);
	CHECK_ERR(vm_suspend(ctx, VM_SUSPEND_LAST), EINVAL);
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_POWEROFF));
	CHECK_ERR(vm_suspend(ctx, VM_SUSPEND_RESET), EALREADY);
	pthread_join(t0, NULL);
	pthread_join(t1, NULL);
	CHECK(a.rc == 0 && a.exit.exitcode == VM_EXITCODE_SUSPENDED);
	CHECK(b.rc == 0 && b.exit.exitcode == VM_EXITCODE_SUSPENDED);
	CHECK(a.exit.u.suspended.how == VM_SUSPEND_POWEROFF);
	CHECK(b.exit.u.suspended.how == VM_SUSPEND_POWEROFF);
	{
		cpuset_t set;
		CHECK_OK(vm_suspended_cpus(ctx, &set));
		CHECK((((unsigned char *)&set)[0] & 3) == 3);
	}
	/* A vCPU that has acknowledged the suspend cannot run again. */
	CHECK_ERR(vm_run(v0, &vmrun), EINVAL);

	/* VM_REINIT: back to a new VM. */
	CHECK_OK(vm_reinit(ctx));
	{
		cpuset_t set;
		uint64_t rax = 1;
		CHECK_OK(vm_active_cpus(ctx, &set));
		CHECK(((unsigned char *)&set)[0] == 0);
		CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RAX, &rax));
		CHECK(rax == 0);
	}
	CHECK_ERR(vm_run(v0, &vmrun), EINVAL); /* inactive again */
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET)); /* suspend state was reset */
	CHECK_OK(vm_run(v0, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED && vme.u.suspended.how == VM_SUSPEND_RESET);

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
	return test_finish("run_test");
}
