/*
 * Calls made from inside a simulated guest's callback. A callback runs on
 * the thread in vm_run, with its vCPU running: a call that needs a vCPU
 * of the same VM to stand still fails with EDEADLK instead of waiting for
 * its own thread (or for another vCPU's thread that may wait for it).
 * Interrupts, statistics and other VMs are fine. The watchdog turns a
 * hang (the behaviour before the check) into a failure. A thread
 * cancelled during a callback is cancelled once VM_RUN has returned.
 */
#include "apic_util.h"

static struct vmctx *ctx, *other_ctx;
static struct vcpu *v0, *v1, *other_v;
static int calls, nested_calls;

/* The other VM's guest, run from inside the first VM's callback: the
 * first VM's vCPUs are still off limits (that thread runs one of them). */
static int
nested_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x81, .size = 1 };
	uint64_t val = 0;

	(void)cookie;
	(void)vcpuid;
	(void)rip;
	*a = out;
	if (nested_calls++ > 0)
		return 0;
	CHECK_ERR(vm_get_register(v0, VM_REG_GUEST_RAX, &val), EDEADLK);
	CHECK_ERR(vm_get_register(other_v, VM_REG_GUEST_RAX, &val), EDEADLK);
	return 0;
}

static int
reentry_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_guest_stats gs;
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 };
	uint64_t val = 0;
	int cap = 0;

	(void)cookie;
	(void)rip;
	*a = out;
	if (calls++ > 0)
		return 0;
	CHECK(vcpuid == 0);
	/* Its own vCPU, another one, all of them, its guest. */
	CHECK_ERR(vm_get_register(v0, VM_REG_GUEST_RAX, &val), EDEADLK);
	CHECK_ERR(vm_set_capability(v0, VM_CAP_HALT_EXIT, 0), EDEADLK);
	CHECK_ERR(vm_get_register(v1, VM_REG_GUEST_RAX, &val), EDEADLK);
	CHECK_ERR(vm_get_capability(v1, VM_CAP_HALT_EXIT, &cap), EDEADLK);
	CHECK_ERR(vcpu_reset(v1), EDEADLK);
	CHECK_ERR(vm_setup_memory(ctx, 1 << 20, VM_MMAP_ALL), EDEADLK);
	CHECK_ERR(vm_reinit(ctx), EDEADLK);
	CHECK_ERR(vmm_rs_guest_stats(v0, &gs), EDEADLK);
	CHECK_ERR(vmm_rs_guest_clear(v1), EDEADLK);
	/* Interrupts and statistics need no vCPU to stand still. */
	CHECK_OK(vm_ioapic_pulse_irq(ctx, 5));
	CHECK_OK(vm_lapic_irq(v1, 0x40));
	CHECK_OK(vm_lapic_msi(ctx, 0xfee00000, 0x41));
	int entries = 0;
	CHECK(vm_get_stats(v0, NULL, &entries) != NULL && entries > 0);
	/* Another VM is another matter, even run from here. */
	CHECK_OK(vm_get_register(other_v, VM_REG_GUEST_RAX, &val));
	CHECK_OK(vmm_rs_guest_stats(other_v, &gs));
	struct vmm_rs_guest_ops nested = { .next = nested_next };
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	CHECK_OK(vmm_rs_guest_set_ops(other_v, &nested, NULL));
	CHECK_OK(vm_activate_cpu(other_v));
	CHECK_OK(vm_run(other_v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x81);
	CHECK(nested_calls == 1);
	return 0;
}

/*
 * A thread cancelled (pthread_cancel) while its guest callback runs: the
 * cancellation waits until VM_RUN has returned, instead of unwinding
 * through the library at a cancellation point inside the callback (which
 * aborted the process).
 */
static pthread_barrier_t in_callback;
static int cancel_reached_testcancel;

static int
cancelled_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x82, .size = 1 };
	(void)cookie;
	(void)vcpuid;
	(void)rip;
	pthread_barrier_wait(&in_callback); /* main: pthread_cancel() now */
	pthread_barrier_wait(&in_callback); /* ... done */
	usleep(1);                          /* a cancellation point */
	*a = out;
	return 0;
}

static void *
cancelled_vcpu_thread(void *arg)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	CHECK_OK(vm_run(arg, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x82);
	cancel_reached_testcancel = 1;
	pthread_testcancel();
	CHECK(0 && "not cancelled");
	return NULL;
}

static void
cancel_inside_a_callback(struct vcpu *v)
{
	struct vmm_rs_guest_ops ops = { .next = cancelled_next };
	pthread_t t;
	void *ret = NULL;
	uint64_t val;

	watchdog_phase("pthread_cancel during a guest callback");
	CHECK_OK(vmm_rs_guest_set_ops(v, &ops, NULL));
	pthread_barrier_init(&in_callback, NULL, 2);
	CHECK(pthread_create(&t, NULL, cancelled_vcpu_thread, v) == 0);
	pthread_barrier_wait(&in_callback);
	CHECK(pthread_cancel(t) == 0);
	pthread_barrier_wait(&in_callback);
	CHECK(pthread_join(t, &ret) == 0);
	CHECK(ret == PTHREAD_CANCELED && cancel_reached_testcancel);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RAX, &val)); /* the vCPU is free */
	pthread_barrier_destroy(&in_callback);
}

int
main(void)
{
	struct vmm_rs_guest_ops ops = { .next = reentry_next };
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	watchdog_start(30, "callback_reentry_test");
	CHECK_OK(vm_create("reentry"));
	CHECK_OK(vm_create("reentry-other"));
	ctx = vm_open("reentry");
	other_ctx = vm_open("reentry-other");
	CHECK(ctx != NULL && other_ctx != NULL);
	if (ctx == NULL || other_ctx == NULL)
		return test_finish("callback_reentry_test");
	v0 = vm_vcpu_open(ctx, 0);
	v1 = vm_vcpu_open(ctx, 1);
	other_v = vm_vcpu_open(other_ctx, 0);
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vmm_rs_guest_set_ops(v0, &ops, NULL));

	CHECK_OK(vm_run(v0, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);
	CHECK(calls == 1);
	/* Outside the callback the same calls work again. */
	uint64_t val = 0;
	struct vmm_rs_guest_stats gs;
	CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RAX, &val));
	CHECK_OK(vmm_rs_guest_stats(v0, &gs));
	CHECK_OK(vm_setup_memory(ctx, 1 << 20, VM_MMAP_ALL));

	cancel_inside_a_callback(v0);

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_vcpu_close(other_v);
	vm_destroy(ctx);
	vm_destroy(other_ctx);
	return test_finish("callback_reentry_test");
}
