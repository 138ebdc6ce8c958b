/*
 * Callbacks of different VMs that wait for each other's vCPUs. A callback
 * runs on the thread in vm_run with its vCPU RUNNING and its guest locked;
 * a call from it on another VM that waits for that VM's vCPU (a per-vCPU
 * call, a lock-all call, vmm_rs_guest_stats) waits for that vCPU's
 * callback to return. When callbacks wait for each other in a cycle (two
 * VMs, or three), the last call to join the cycle fails with EDEADLK and
 * the others complete; a one-way chain of such waits is never refused.
 * Every callback first meets the others at a barrier, so each call is made
 * while its target is inside its callback. Before the check the cycles
 * hung: the watchdog fails the test.
 *
 * The last phase closes a cycle through a suspend: a vCPU run from a
 * callback waits there for the other vCPUs of its VM to suspend, and one
 * of them waits in its callback for the first callback's vCPU.
 */
#include "apic_util.h"

enum op { OP_NONE, OP_GETREG, OP_STATS, OP_REINIT, OP_RUN };

struct role {
	struct vcpu *self;
	enum op op;
	struct vcpu *target;        /* OP_GETREG, OP_STATS, OP_RUN */
	struct vmctx *target_ctx;   /* OP_REINIT (a lock-all call) */
	pthread_barrier_t *bar;
	int *await;  /* a flag to wait for before the call, or NULL */
	int *raise;  /* a flag to raise after it, or NULL */
	int fired;
	int rc, err;
};

static pthread_mutex_t flag_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flag_cv = PTHREAD_COND_INITIALIZER;

static void
raise_flag(int *f)
{
	pthread_mutex_lock(&flag_mtx);
	*f = 1;
	pthread_cond_broadcast(&flag_cv);
	pthread_mutex_unlock(&flag_mtx);
}

static void
await_flag(int *f)
{
	pthread_mutex_lock(&flag_mtx);
	while (!*f)
		pthread_cond_wait(&flag_cv, &flag_mtx);
	pthread_mutex_unlock(&flag_mtx);
}

/* A guest (of B0) whose one callback raises flags[0], then waits for
 * flags[1] before its port write. */
static int
signal_then_wait_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x91, .size = 1 };
	int *flags = cookie;

	(void)vcpuid;
	(void)rip;
	*a = out;
	raise_flag(&flags[0]);
	await_flag(&flags[1]);
	return 0;
}

static int
role_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x90, .size = 1 };
	struct role *r = cookie;
	struct vmm_rs_guest_stats gs;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	uint64_t val = 0;

	(void)vcpuid;
	(void)rip;
	*a = out;
	if (r->fired)
		return 0;
	r->fired = 1;
	pthread_barrier_wait(r->bar); /* every role is inside its callback */
	if (r->await != NULL)
		await_flag(r->await);
	errno = 0;
	switch (r->op) {
	case OP_NONE:
		r->rc = 0;
		break;
	case OP_GETREG:
		r->rc = vm_get_register(r->target, VM_REG_GUEST_RAX, &val);
		break;
	case OP_STATS:
		r->rc = vmm_rs_guest_stats(r->target, &gs);
		break;
	case OP_REINIT:
		r->rc = vm_reinit(r->target_ctx);
		break;
	case OP_RUN:
		r->rc = vm_run(r->target, &vmrun);
		break;
	}
	r->err = r->rc == 0 ? 0 : errno;
	if (r->raise != NULL)
		raise_flag(r->raise);
	return 0;
}

static void *
role_thread(void *arg)
{
	struct role *r = arg;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	/* A kick left from an earlier phase may end a run before the step. */
	while (!r->fired)
		CHECK_OK(vm_run(r->self, &vmrun));
	return NULL;
}

/* Runs every role's vCPU on its own thread; returns the EDEADLK count. */
static int
run_roles(const char *phase, struct role *roles, int n)
{
	static const struct vmm_rs_guest_ops ops = { .next = role_next };
	pthread_barrier_t bar;
	pthread_t t[8];
	int deadlocks = 0;

	watchdog_phase(phase);
	pthread_barrier_init(&bar, NULL, (unsigned)n);
	for (int i = 0; i < n; i++) {
		roles[i].bar = &bar;
		roles[i].fired = 0;
		roles[i].rc = -2;
		CHECK_OK(vmm_rs_guest_set_ops(roles[i].self, &ops, &roles[i]));
	}
	for (int i = 0; i < n; i++)
		CHECK(pthread_create(&t[i], NULL, role_thread, &roles[i]) == 0);
	for (int i = 0; i < n; i++)
		CHECK(pthread_join(t[i], NULL) == 0);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < n; i++)
		if (roles[i].rc == -1 && roles[i].err == EDEADLK)
			deadlocks++;
	return deadlocks;
}

/* Exactly one role got EDEADLK; the others' calls did their work. */
static void
check_one_refused(const char *phase, struct role *roles, int n)
{
	int deadlocks = run_roles(phase, roles, n);

	if (deadlocks != 1)
		fprintf(stderr, "%s: %d calls got EDEADLK\n", phase, deadlocks);
	CHECK(deadlocks == 1);
	for (int i = 0; i < n; i++) {
		struct role *r = &roles[i];
		if (r->rc == -1 && r->err == EDEADLK)
			continue;
		/* vm_reinit waits for every vCPU, then finds the VM not suspended. */
		if (r->op == OP_REINIT)
			CHECK(r->rc == -1 && r->err == EBUSY);
		else
			CHECK(r->rc == 0);
	}
}

/*
 * The suspend phase: D0's callback runs E0 of the suspended VM E, so E0
 * waits for E1 to suspend too; E1's callback, entered before the suspend,
 * then reads D0's register, which waits for D0's callback.
 */
static struct {
	struct vcpu *d0, *e0;
	int e1_in, go;          /* flags */
	int d0_fired, e1_fired;
	int run_rc, run_err, run_exit;
	int getreg_rc, getreg_err;
} sw;

static int
suspend_d0_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x92, .size = 1 };
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	(void)cookie;
	(void)vcpuid;
	(void)rip;
	*a = out;
	if (sw.d0_fired)
		return 0;
	sw.d0_fired = 1;
	errno = 0;
	sw.run_rc = vm_run(sw.e0, &vmrun);
	sw.run_err = errno;
	sw.run_exit = vme.exitcode;
	return 0;
}

static int
suspend_e1_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x92, .size = 1 };
	uint64_t val;

	(void)cookie;
	(void)vcpuid;
	(void)rip;
	*a = out;
	if (sw.e1_fired)
		return 0;
	sw.e1_fired = 1;
	raise_flag(&sw.e1_in);
	await_flag(&sw.go);
	errno = 0;
	sw.getreg_rc = vm_get_register(sw.d0, VM_REG_GUEST_RAX, &val);
	sw.getreg_err = errno;
	return 0;
}

/* Runs a vCPU until its callback has fired and it has left with SUSPENDED
 * (E1: its first exit is the port write after the callback) or, for D0,
 * until its callback has fired. */
static void *
suspend_runner(void *arg)
{
	struct vcpu *v = arg;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	for (;;) {
		CHECK_OK(vm_run(v, &vmrun));
		if (v == sw.d0 ? sw.d0_fired : vme.exitcode == VM_EXITCODE_SUSPENDED)
			return NULL;
	}
}

static void
suspend_cycle(void)
{
	static const struct vmm_rs_guest_ops d0_ops = { .next = suspend_d0_next };
	static const struct vmm_rs_guest_ops e1_ops = { .next = suspend_e1_next };
	struct vcpu *d1, *e1;
	struct vmctx *d, *e;
	pthread_t td, te;

	watchdog_phase("suspend-wait cycle");
	d = open_vm_with_two_vcpus("cycle-d", &sw.d0, &d1);
	e = open_vm_with_two_vcpus("cycle-e", &sw.e0, &e1);
	if (d == NULL || e == NULL)
		return;
	CHECK_OK(vmm_rs_guest_set_ops(sw.d0, &d0_ops, NULL));
	CHECK_OK(vmm_rs_guest_set_ops(e1, &e1_ops, NULL));
	CHECK(pthread_create(&te, NULL, suspend_runner, e1) == 0);
	await_flag(&sw.e1_in);
	CHECK_OK(vm_suspend(e, VM_SUSPEND_POWEROFF));
	CHECK(pthread_create(&td, NULL, suspend_runner, sw.d0) == 0);
	/* E0 sleeps in the suspend wait, inside D0's callback. */
	while (vmm_rs_vcpu_state(sw.e0) != VCPU_SLEEPING)
		sched_yield();
	raise_flag(&sw.go);
	CHECK(pthread_join(td, NULL) == 0);
	CHECK(pthread_join(te, NULL) == 0);
	/* E1's call closed the cycle; then it suspended and E0's wait ended. */
	CHECK(sw.getreg_rc == -1 && sw.getreg_err == EDEADLK);
	CHECK(sw.run_rc == 0 && sw.run_exit == VM_EXITCODE_SUSPENDED);
	vm_vcpu_close(sw.d0);
	vm_vcpu_close(d1);
	vm_vcpu_close(sw.e0);
	vm_vcpu_close(e1);
	vm_destroy(d);
	vm_destroy(e);
}

int
main(void)
{
	struct vcpu *a0, *a1, *b0, *b1, *c0, *c1;
	struct vmctx *a, *b, *c;

	watchdog_start(30, "callback_cycle_test");
	a = open_vm_with_two_vcpus("cycle-a", &a0, &a1);
	b = open_vm_with_two_vcpus("cycle-b", &b0, &b1);
	c = open_vm_with_two_vcpus("cycle-c", &c0, &c1);
	if (a == NULL || b == NULL || c == NULL)
		return test_finish("callback_cycle_test");

	/*
	 * One way: A0 waits for B0, whose callback waits for C0 (its guest
	 * counters), whose callback waits for nobody; A1 locks all of C.
	 * Nothing is refused.
	 */
	{
		struct role r[] = {
			{ .self = a0, .op = OP_GETREG, .target = b0 },
			{ .self = b0, .op = OP_STATS, .target = c0 },
			{ .self = c0, .op = OP_NONE },
			{ .self = a1, .op = OP_REINIT, .target_ctx = c },
		};
		CHECK(run_roles("one-way chain", r, 4) == 0);
		CHECK(r[0].rc == 0 && r[1].rc == 0 && r[2].rc == 0);
		CHECK(r[3].rc == -1 && r[3].err == EBUSY);
	}
	/* Two VMs, lock-one both ways: A0 reads B0's register, B0 A0's. */
	{
		struct role r[] = {
			{ .self = a0, .op = OP_GETREG, .target = b0 },
			{ .self = b0, .op = OP_GETREG, .target = a0 },
		};
		check_one_refused("two-VM lock-one cycle", r, 2);
	}
	/* The guest counters: each waits for the other's guest mutex. */
	{
		struct role r[] = {
			{ .self = a1, .op = OP_STATS, .target = b1 },
			{ .self = b1, .op = OP_STATS, .target = a1 },
		};
		check_one_refused("guest_stats cycle", r, 2);
	}
	/* Lock-all: A0 locks all of B (vm_reinit) while B1 reads A0. */
	{
		struct role r[] = {
			{ .self = a0, .op = OP_REINIT, .target_ctx = b },
			{ .self = b1, .op = OP_GETREG, .target = a0 },
		};
		check_one_refused("lock-all cycle", r, 2);
	}
	/* Three VMs: A0 -> B0 -> C0 -> A0, mixing both kinds of wait. */
	{
		struct role r[] = {
			{ .self = a0, .op = OP_GETREG, .target = b0 },
			{ .self = b0, .op = OP_STATS, .target = c0 },
			{ .self = c0, .op = OP_GETREG, .target = a0 },
		};
		check_one_refused("three-VM cycle", r, 3);
	}
	/*
	 * One way, two callbacks of A each running a vCPU of B (B as A's
	 * nested guest): A1 runs B1 while A0's run of B0 is inside B0's
	 * callback, which waits for A1's run to end. Each holds one vCPU of
	 * B, and neither is refused.
	 */
	{
		static const struct vmm_rs_guest_ops b0_ops = { .next = signal_then_wait_next };
		const struct vmm_rs_action out[] = {
			{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x91, .size = 1 },
		};
		static int flags[2]; /* B0's callback runs; A1's run ended */
		struct role r[] = {
			{ .self = a0, .op = OP_RUN, .target = b0 },
			{ .self = a1, .op = OP_RUN, .target = b1, .await = &flags[0], .raise = &flags[1] },
		};
		CHECK_OK(vmm_rs_guest_set_ops(b0, &b0_ops, flags));
		CHECK_OK(vmm_rs_guest_set_script(b1, out, 1, -1));
		CHECK(run_roles("two callbacks running vCPUs of one VM", r, 2) == 0);
		CHECK(r[0].rc == 0 && r[1].rc == 0);
	}
	/* The refused waits left nothing registered: one way works again. */
	{
		struct role r[] = {
			{ .self = b0, .op = OP_GETREG, .target = a0 },
			{ .self = a0, .op = OP_NONE },
		};
		CHECK(run_roles("one-way after the cycles", r, 2) == 0);
		CHECK(r[0].rc == 0);
	}
	suspend_cycle();

	vm_vcpu_close(a0);
	vm_vcpu_close(a1);
	vm_vcpu_close(b0);
	vm_vcpu_close(b1);
	vm_vcpu_close(c0);
	vm_vcpu_close(c1);
	vm_destroy(a);
	vm_destroy(b);
	vm_destroy(c);
	return test_finish("callback_cycle_test");
}
