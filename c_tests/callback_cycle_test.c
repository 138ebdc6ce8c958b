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
 * The last phases close cycles through a vCPU's wait for others of its
 * VM: a vCPU run from a callback waits for the other vCPUs to suspend, or
 * its guest's I/O APIC write waits for them to leave RUNNING (block_run),
 * and one of them waits in its callback for the first callback's vCPU.
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
 * The peer-wait phases: Y1's callback is entered first; then X0's callback
 * runs Y0, which waits for the other vCPUs of Y, Y1 among them: to
 * suspend (Y is suspended), or, for its guest's write making pin 5
 * level-triggered for Y1, to leave RUNNING (block_run). Then Y1's
 * callback reads X0's register, which waits for X0's callback.
 */
static struct {
	struct vcpu *x0, *y0;
	int y1_in, go;          /* flags */
	int x0_fired, y1_fired;
	int y1_until;           /* the exit code Y1 runs to */
	int run_rc, run_exit;
	int getreg_rc, getreg_err;
} pc;

static int
peer_x0_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x92, .size = 1 };
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	(void)cookie;
	(void)vcpuid;
	(void)rip;
	*a = out;
	if (pc.x0_fired)
		return 0;
	pc.x0_fired = 1;
	pc.run_rc = vm_run(pc.y0, &vmrun);
	pc.run_exit = vme.exitcode;
	return 0;
}

static int
peer_y1_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct vmm_rs_action out = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x92, .size = 1 };
	uint64_t val;

	(void)cookie;
	(void)vcpuid;
	(void)rip;
	*a = out;
	if (pc.y1_fired)
		return 0;
	pc.y1_fired = 1;
	raise_flag(&pc.y1_in);
	await_flag(&pc.go);
	errno = 0;
	pc.getreg_rc = vm_get_register(pc.x0, VM_REG_GUEST_RAX, &val);
	pc.getreg_err = errno;
	return 0;
}

/* Runs X0 until its callback has fired, Y1 until its callback has fired
 * and it has left with pc.y1_until. */
static void *
peer_runner(void *arg)
{
	struct vcpu *v = arg;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	for (;;) {
		CHECK_OK(vm_run(v, &vmrun));
		if (v == pc.x0 ? pc.x0_fired : pc.y1_fired && vme.exitcode == pc.y1_until)
			return NULL;
	}
}

static void
peer_cycle(int suspend)
{
	static const struct vmm_rs_guest_ops x0_ops = { .next = peer_x0_next };
	static const struct vmm_rs_guest_ops y1_ops = { .next = peer_y1_next };
	const struct vmm_rs_action y0_script[] = {
		/* Pin 5: destination APIC 1 (high half), then level, vector 0x45. */
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0xfec00000, .size = 4, .value = 0x10 + 2 * 5 + 1 },
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0xfec00010, .size = 4, .value = 1u << 24 },
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0xfec00000, .size = 4, .value = 0x10 + 2 * 5 },
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0xfec00010, .size = 4, .value = 0x8000 | 0x45 },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x93, .size = 1 },
	};
	struct vmm_rs_ioapic_stats st;
	struct vcpu *x1, *y1;
	struct vmctx *x, *y;
	pthread_t tx, ty;
	int rc;

	watchdog_phase(suspend ? "suspend-wait cycle" : "RTE-write cycle");
	memset(&pc, 0, sizeof(pc));
	x = open_vm_with_two_vcpus(suspend ? "cycle-sx" : "cycle-rx", &pc.x0, &x1);
	y = open_vm_with_two_vcpus(suspend ? "cycle-sy" : "cycle-ry", &pc.y0, &y1);
	if (x == NULL || y == NULL)
		return;
	pc.y1_until = suspend ? VM_EXITCODE_SUSPENDED : VM_EXITCODE_INOUT;
	CHECK_OK(vmm_rs_guest_set_ops(pc.x0, &x0_ops, NULL));
	CHECK_OK(vmm_rs_guest_set_ops(y1, &y1_ops, NULL));
	if (!suspend)
		CHECK_OK(vmm_rs_guest_set_script(pc.y0, y0_script, 5, -1));
	CHECK(pthread_create(&ty, NULL, peer_runner, y1) == 0);
	await_flag(&pc.y1_in);
	if (suspend)
		CHECK_OK(vm_suspend(y, VM_SUSPEND_POWEROFF));
	CHECK(pthread_create(&tx, NULL, peer_runner, pc.x0) == 0);
	/* Y0's wait is registered before it sleeps in the suspend wait, or
	 * before its RTE write counts a TMR update. */
	if (suspend) {
		while (vmm_rs_vcpu_state(pc.y0) != VCPU_SLEEPING)
			sched_yield();
	} else {
		do {
			rc = vmm_rs_ioapic_stats(y, &st);
			sched_yield();
		} while (rc == 0 && st.tmr_updates == 0);
		CHECK(rc == 0);
	}
	raise_flag(&pc.go);
	CHECK(pthread_join(tx, NULL) == 0);
	CHECK(pthread_join(ty, NULL) == 0);
	/* Y1's call closed the cycle. Then Y1 suspended, and Y0's run ended
	 * SUSPENDED; or Y1 left RUNNING, the write was staged, and Y0's guest
	 * went on to its port write. */
	CHECK(pc.getreg_rc == -1 && pc.getreg_err == EDEADLK);
	CHECK(pc.run_rc == 0 && pc.run_exit == (suspend ? VM_EXITCODE_SUSPENDED : VM_EXITCODE_INOUT));
	if (!suspend) {
		CHECK_OK(vmm_rs_ioapic_stats(y, &st));
		CHECK(st.tmr_updates == 1 && st.tmr_block_runs == 1);
	}
	vm_vcpu_close(pc.x0);
	vm_vcpu_close(x1);
	vm_vcpu_close(pc.y0);
	vm_vcpu_close(y1);
	vm_destroy(x);
	vm_destroy(y);
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
	peer_cycle(1);
	peer_cycle(0);

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
