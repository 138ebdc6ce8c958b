/*
 * Whole scenarios through vm_run with the simulated backend, each vCPU on
 * its own thread like bhyve's vm_loop:
 *  1. a device thread asserts a level pin; the halted guest wakes, takes
 *     the vector, reads the device's port (which deasserts the pin) and
 *     EOIs; no second delivery until the device asserts again;
 *  2. an MSI to a chosen vCPU; 3. an IPI from one scripted guest to
 *     another; 4. port OUT payload and RIP advance;
 *  5. a kick (reqidle) of a guest that computes without exits;
 *  6. suspend of a running VM (every vCPU returns SUSPENDED), then REINIT;
 *  7. every vCPU halted with interrupts disabled: VM_SUSPEND_HALT;
 *  8. a callback guest's OUT value, IN result and end;
 *  9. restarted instructions, an NMI by MSI.
 */
#include <stdatomic.h>

#include "apic_util.h"

#define DEV_PIN 10
#define DEV_VEC 0x41
#define DEV_PORT 0x60
#define ROUNDS 20

/* --- scenario 1: a device with a level interrupt and a status port --- */

static struct vmctx *ctx;
static atomic_int handled;   /* interrupts the guest finished (after EOI) */
static atomic_int delivered; /* interrupts the guest received */
static atomic_int bad_read;

struct dev_guest {
	int phase; /* 0 sti, 1 halt until interrupt, 2 read port, 3 eoi */
	int pending;
};

static int
dev_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct dev_guest *g = cookie;
	(void)vcpuid;
	(void)rip;
	memset(a, 0, sizeof(*a));
	switch (g->phase) {
	case 0:
		a->kind = VMM_RS_ACT_STI;
		g->phase = 1;
		break;
	case 1:
		if (!g->pending) {
			a->kind = VMM_RS_ACT_HLT;
			break;
		}
		g->pending = 0;
		a->kind = VMM_RS_ACT_PORT_IN;
		a->port = DEV_PORT;
		a->size = 1;
		g->phase = 3;
		break;
	case 3:
		a->kind = VMM_RS_ACT_MMIO_WRITE;
		a->gpa = LAPIC_GPA + LAPIC_EOI;
		a->size = 4;
		g->phase = 1;
		atomic_fetch_add(&handled, 1);
		break;
	}
	return 0;
}

static void
dev_intr(void *cookie, int vcpuid, int vector)
{
	struct dev_guest *g = cookie;
	(void)vcpuid;
	if (vector == DEV_VEC) {
		g->pending = 1;
		atomic_fetch_add(&delivered, 1);
	}
}

static void
dev_read(void *cookie, int vcpuid, uint64_t value)
{
	(void)cookie;
	(void)vcpuid;
	if (value != 0xab)
		atomic_fetch_add(&bad_read, 1);
}

/* bhyve's vm_loop: run, emulate port I/O, repeat until an exit we stop on. */
struct loop {
	struct vcpu *vcpu;
	atomic_int stop_on;
	int last_exit;
	atomic_int outs;  /* incremented after last_out* are written */
	uint32_t last_out;
	uint64_t last_out_rip;
	int last_out_len;
	atomic_int done;  /* the loop returned */
	int run_errno;    /* errno of a failed vm_run, or 0 */
};

static void *
vcpu_loop(void *p)
{
	struct loop *l = p;
	struct vm_exit vme = { 0 };
	struct vm_run vmrun = { .vm_exit = &vme };
	while (vm_run(l->vcpu, &vmrun) == 0) {
		l->last_exit = vme.exitcode;
		if (vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.in &&
		    vme.u.inout.port == DEV_PORT) {
			/* The device: reading the status acknowledges it. */
			vm_ioapic_deassert_irq(ctx, DEV_PIN);
			vm_set_register(l->vcpu, VM_REG_GUEST_RAX, 0xab);
		} else if (vme.exitcode == VM_EXITCODE_INOUT && !vme.u.inout.in) {
			l->last_out = vme.u.inout.eax;
			l->last_out_rip = vme.rip;
			l->last_out_len = vme.inst_length;
			atomic_fetch_add(&l->outs, 1);
		}
		if (vme.exitcode == l->stop_on)
			break;
	}
	if (vme.exitcode != l->stop_on)
		l->run_errno = errno;
	atomic_store(&l->done, 1);
	return NULL;
}

static void
wait_guest_interrupts(struct vcpu *v, uint64_t n)
{
	struct vmm_rs_guest_stats s;
	do {
		sched_yield();
		CHECK_OK(vmm_rs_guest_stats(v, &s));
	} while (s.interrupts < n);
}

/* --- 8: a callback guest's values, results and end --- */

struct end_guest {
	int state;       /* what next() does: index into end_acts, then the end */
	int malformed;   /* end with a malformed action, not a -1 return */
	int calls_after; /* next() calls after the end */
	int reads;       /* read_result calls */
	uint64_t read;
};

static const struct vmm_rs_action end_acts[] = {
	{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x62, .size = 4, .value = 0x89abcdef },
	{ .kind = VMM_RS_ACT_PORT_IN, .port = DEV_PORT, .size = 1 },
};
/* What a guest asked after its end does: an exit. */
static const struct vmm_rs_action after_end = { .kind = VMM_RS_ACT_PORT_OUT, .port = 0x63, .size = 1 };

static int
end_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct end_guest *g = cookie;
	(void)vcpuid;
	(void)rip;
	int at = g->state++;
	if (at < 2) {
		*a = end_acts[at];
		return 0;
	}
	if (at > 2) {
		g->calls_after++;
		*a = after_end;
		return 0;
	}
	/* The end: -1 with a valid action (COMPUTE), or a malformed one. */
	memset(a, 0, sizeof(*a));
	if (!g->malformed)
		return -1;
	a->kind = 42;
	return 0;
}

static void
end_read(void *cookie, int vcpuid, uint64_t value)
{
	struct end_guest *g = cookie;
	(void)vcpuid;
	g->reads++;
	g->read = value;
}

/*
 * A 4-byte OUT's whole value reaches the exit, an IN's value the
 * read_result callback; a guest that ends (next() returns -1, or gives a
 * malformed action) is not asked again: it halts with interrupts
 * disabled, and with no other vCPU active the VM suspends (HALT).
 */
static void
test_guest_end(void)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct vmm_rs_guest_ops ops = { .next = end_next, .read_result = end_read };

	struct vcpu *v;
	struct vmctx *c = open_vm_with_vcpu("guest_end", 0, &v);
	if (c == NULL)
		return;
	for (int malformed = 0; malformed <= 1; malformed++) {
		struct end_guest g = { .malformed = malformed };
		CHECK_OK(vm_activate_cpu(v));
		CHECK_OK(vmm_rs_guest_set_ops(v, &ops, &g));
		CHECK_OK(vm_run(v, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_INOUT && !vme.u.inout.in && vme.u.inout.port == 0x62);
		CHECK(vme.u.inout.bytes == 4 && vme.u.inout.eax == 0x89abcdef);
		CHECK_OK(vm_run(v, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.in && vme.u.inout.port == DEV_PORT);
		CHECK_OK(vm_set_register(v, VM_REG_GUEST_RAX, 0x5a));
		CHECK_OK(vm_run(v, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED && vme.u.suspended.how == VM_SUSPEND_HALT);
		CHECK(g.reads == 1 && g.read == 0x5a);
		CHECK(g.calls_after == 0);
		CHECK_OK(vm_reinit(c));
	}
	vm_vcpu_close(v);
	vm_destroy(c);
}

/*
 * vm_restart_instruction() restarts the exit's instruction of the
 * handle's vCPU (here vCPU 1): the guest's IN runs again.
 * vm_inject_fault() faults the instruction that exited (it is
 * restarted): the IN's read is not made. An MSI's delivery mode counts:
 * NMI is dropped, as FreeBSD's vlapic_deliver_intr takes only fixed,
 * lowest-priority and ExtINT.
 */
static void
test_restart(void)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct vmm_rs_guest_stats gs;
	struct vmm_rs_action prog[] = {
		{ .kind = VMM_RS_ACT_PORT_IN, .port = DEV_PORT, .size = 1 },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0xe9, .size = 1 },
		{ .kind = VMM_RS_ACT_PORT_IN, .port = DEV_PORT, .size = 1 },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0xea, .size = 1 },
	};

	struct vcpu *v;
	struct vmctx *c = open_vm_with_vcpu("guest_restart", 1, &v);
	if (c == NULL)
		return;
	CHECK_OK(vm_activate_cpu(v));
	CHECK_OK(vmm_rs_guest_set_script(v, prog, 4, 0));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == DEV_PORT);
	CHECK_OK(vm_restart_instruction(v));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == DEV_PORT);
	lapic_enable(v);
	CHECK_OK(vm_lapic_msi(c, 0xfee00000 | (1 << 12), 0x400 | 0x40));
	CHECK(lapic_bit(v, LAPIC_IRR, 0x40) == 0);
	CHECK_OK(vm_lapic_msi(c, 0xfee00000 | (1 << 12), 0x40));
	CHECK(lapic_bit(v, LAPIC_IRR, 0x40) == 1);
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RAX, 0x55));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0xe9);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_read == 0x55);
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == DEV_PORT);
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RAX, 0x77));
	vm_inject_fault(v, 13, 1, 0); /* #GP(0) */
	CHECK_OK(vm_run(v, &vmrun));
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_vector == 13 && gs.last_read == 0x55);
	vm_vcpu_close(v);
	vm_destroy(c);
}

int
main(void)
{
	struct vcpu *v0, *v1;
	struct vmm_rs_guest_stats gs;
	pthread_t t0, t1;

	watchdog_start(60, "guest_run_test");
	CHECK_OK(vm_create("guests"));
	ctx = vm_open("guests");
	v0 = vm_vcpu_open(ctx, 0);
	v1 = vm_vcpu_open(ctx, 1);
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_activate_cpu(v1));
	lapic_enable(v0);
	lapic_enable(v1);

	watchdog_phase("guest_run_test 1: device interrupt round trips");
	/* 1. Device interrupt round trips. */
	struct dev_guest dg = { 0 };
	struct vmm_rs_guest_ops ops = { .next = dev_next, .interrupt = dev_intr, .read_result = dev_read };
	CHECK_OK(vmm_rs_guest_set_ops(v0, &ops, &dg));
	rte_write(v0, DEV_PIN, RTE_LEVEL | DEV_VEC, 0);
	struct loop l0 = { .vcpu = v0, .stop_on = VM_EXITCODE_SUSPENDED };
	pthread_create(&t0, NULL, vcpu_loop, &l0);
	for (int i = 1; i <= ROUNDS; i++) {
		wait_state(v0, VCPU_SLEEPING); /* the guest halted, waiting */
		CHECK_OK(vm_ioapic_assert_irq(ctx, DEV_PIN));
		while (atomic_load(&handled) < i)
			sched_yield();
	}
	/* After the last EOI the pin is deasserted: no further delivery. */
	wait_state(v0, VCPU_SLEEPING);
	CHECK(atomic_load(&delivered) == ROUNDS);
	CHECK(atomic_load(&bad_read) == 0);
	CHECK(lapic_bit(v0, LAPIC_IRR, DEV_VEC) == 0); /* takes vCPU 0: REQIDLE, re-run */
	CHECK((rte_low(v0, DEV_PIN) & RTE_REMOTE_IRR) == 0);
	CHECK_OK(vmm_rs_guest_stats(v0, &gs));
	CHECK(gs.interrupts == ROUNDS && gs.last_read == 0xab);
	/* Re-asserting delivers again (the loop went on after each REQIDLE). */
	wait_state(v0, VCPU_SLEEPING);
	CHECK_OK(vm_ioapic_assert_irq(ctx, DEV_PIN));
	while (atomic_load(&handled) < ROUNDS + 1)
		sched_yield();
	CHECK(atomic_load(&delivered) == ROUNDS + 1);

	watchdog_phase("guest_run_test 2: MSI to vCPU 1");
	/* 2. MSI to vCPU 1, whose script waits for an interrupt and EOIs it. */
	struct vmm_rs_action wait_eoi[] = {
		{ .kind = VMM_RS_ACT_STI },
		{ .kind = VMM_RS_ACT_WAIT_INTR_EOI },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1, .value = 0x1234 },
	};
	CHECK_OK(vmm_rs_guest_set_script(v1, wait_eoi, 3, 1));
	struct loop l1 = { .vcpu = v1, .stop_on = VM_EXITCODE_SUSPENDED };
	pthread_create(&t1, NULL, vcpu_loop, &l1);
	wait_state(v1, VCPU_SLEEPING);
	CHECK_OK(vm_lapic_msi(ctx, 0xFEE00000u | (1u << 12), 0x55));
	wait_guest_interrupts(v1, 1);
	CHECK_OK(vmm_rs_guest_stats(v1, &gs));
	CHECK(gs.last_vector == 0x55);
	watchdog_phase("guest_run_test 4: OUT payload and RIP advance");
	/* 4. The OUT after the EOI: payload truncated to its size, RIP advances. */
	while (l1.outs < 1)
		sched_yield();
	CHECK(l1.last_out == 0x34);
	CHECK(l1.last_out_len == 1);

	watchdog_phase("guest_run_test 3: IPI between guests");
	/* 3. IPI: vCPU 0 becomes a script that sends vector 0x66 to vCPU 1. */
	CHECK_OK(vm_suspend_cpu(v0)); /* park vCPU 0's loop (DEBUG exit) */
	l0.stop_on = VM_EXITCODE_DEBUG;
	pthread_join(t0, NULL);
	CHECK_OK(vm_resume_cpu(v0));
	struct vmm_rs_action ipi[] = {
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = LAPIC_GPA + LAPIC_ICR_HI, .size = 4, .value = 1u << 24 },
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = LAPIC_GPA + LAPIC_ICR_LO, .size = 4, .value = 0x66 },
		{ .kind = VMM_RS_ACT_COMPUTE }, /* then compute forever: scenario 5 */
	};
	CHECK_OK(vmm_rs_guest_set_script(v0, ipi, 3, 2));
	l0.stop_on = VM_EXITCODE_SUSPENDED;
	pthread_create(&t0, NULL, vcpu_loop, &l0);
	wait_guest_interrupts(v1, 2);
	CHECK_OK(vmm_rs_guest_stats(v1, &gs));
	CHECK(gs.last_vector == 0x66);

	watchdog_phase("guest_run_test 5: kick of a computing guest");
	/* 5. A guest computing without exits is still kicked out (reqidle). */
	{
		struct vmm_rs_guest_stats before, now;
		uint64_t rip;
		CHECK_OK(vmm_rs_guest_stats(v0, &before));
		do { /* the guest is computing: its step count moves */
			sched_yield();
			CHECK_OK(vmm_rs_guest_stats(v0, &now));
		} while (now.steps < before.steps + 1000);
		/* A lock-one ioctl returns (the watchdog fails it otherwise). */
		CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RIP, &rip));
		CHECK(rip > 1000);
	}

	watchdog_phase("guest_run_test 6: suspend of a running VM");
	/* 6. Suspend the running VM: both loops return SUSPENDED. */
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
	pthread_join(t0, NULL);
	pthread_join(t1, NULL);
	CHECK(l0.last_exit == VM_EXITCODE_SUSPENDED);
	CHECK(l1.last_exit == VM_EXITCODE_SUSPENDED);
	CHECK_OK(vm_reinit(ctx));

	watchdog_phase("guest_run_test 7: all vCPUs halted: VM_SUSPEND_HALT");
	/* 7. All vCPUs halt with interrupts disabled: VM_SUSPEND_HALT. */
	struct vmm_rs_action cli_hlt[] = { { .kind = VMM_RS_ACT_CLI }, { .kind = VMM_RS_ACT_HLT } };
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_activate_cpu(v1));
	CHECK_OK(vmm_rs_guest_set_script(v0, cli_hlt, 2, -1));
	CHECK_OK(vmm_rs_guest_set_script(v1, cli_hlt, 2, -1));
	struct loop h0 = { .vcpu = v0, .stop_on = VM_EXITCODE_SUSPENDED };
	struct loop h1 = { .vcpu = v1, .stop_on = VM_EXITCODE_SUSPENDED };
	pthread_create(&t0, NULL, vcpu_loop, &h0);
	pthread_create(&t1, NULL, vcpu_loop, &h1);
	pthread_join(t0, NULL);
	pthread_join(t1, NULL);
	CHECK(h0.last_exit == VM_EXITCODE_SUSPENDED && h1.last_exit == VM_EXITCODE_SUSPENDED);
	{
		struct vm_exit vme;
		struct vm_run vmrun = { .vm_exit = &vme };
		CHECK_ERR(vm_run(v0, &vmrun), EINVAL); /* acknowledged already */
	}
	CHECK_ERR(vm_suspend(ctx, VM_SUSPEND_HALT), EALREADY);

	watchdog_phase("guest_run_test 7b: an NMI wakes cli; hlt");
	/*
	 * 7b. An NMI wakes a vCPU halted with interrupts disabled (vCPU 1
	 * computes, so the VM does not halt); the guest takes it as vector 2.
	 */
	CHECK_OK(vm_reinit(ctx));
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_activate_cpu(v1));
	{
		struct vmm_rs_action nmi_wait[] = {
			{ .kind = VMM_RS_ACT_CLI },
			{ .kind = VMM_RS_ACT_HLT },
			{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1, .value = 0x4e },
		};
		struct vmm_rs_action spin[] = { { .kind = VMM_RS_ACT_COMPUTE } };
		CHECK_OK(vmm_rs_guest_set_script(v0, nmi_wait, 3, -1));
		CHECK_OK(vmm_rs_guest_set_script(v1, spin, 1, 0));
		struct loop n0 = { .vcpu = v0, .stop_on = VM_EXITCODE_SUSPENDED };
		struct loop n1 = { .vcpu = v1, .stop_on = VM_EXITCODE_SUSPENDED };
		pthread_create(&t0, NULL, vcpu_loop, &n0);
		pthread_create(&t1, NULL, vcpu_loop, &n1);
		while (vmm_rs_vcpu_state(v0) != VCPU_SLEEPING && !atomic_load(&n0.done))
			sched_yield();
		CHECK(!atomic_load(&n0.done) && n0.run_errno == 0);
		CHECK_OK(vm_inject_nmi(v0));
		wait_guest_interrupts(v0, 1);
		struct vmm_rs_guest_stats s;
		CHECK_OK(vmm_rs_guest_stats(v0, &s));
		CHECK(s.interrupts == 1 && s.last_vector == 2);
		/* Let it get past the HLT to its port write before suspending. */
		do {
			sched_yield();
			CHECK_OK(vmm_rs_guest_stats(v0, &s));
		} while (s.steps < 3 && !atomic_load(&n0.done));
		CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
		pthread_join(t0, NULL);
		pthread_join(t1, NULL);
		CHECK(n0.outs == 1 && n0.last_out == 0x4e); /* it ran on past the HLT */
	}

	watchdog_phase("guest_run_test 8: PAUSE and userland MMIO");
	/*
	 * 8. With VM_CAP_PAUSE_EXIT (bhyve -P), PAUSE goes to the caller; so
	 * does MMIO outside the emulated devices, here in its illumos-style
	 * form (inst_emul_test.c has FreeBSD's). Without the capability (the
	 * default) PAUSE runs in the guest.
	 */
	CHECK_OK(vm_reinit(ctx));
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vmm_rs_set_mmio_exitcode(ctx, VM_EXITCODE_MMIO));
	{
		int cap = -1;
		CHECK_OK(vm_get_capability(v0, VM_CAP_PAUSE_EXIT, &cap));
		CHECK(cap == 0);
		CHECK_OK(vm_set_capability(v0, VM_CAP_PAUSE_EXIT, 1));
	}
	{
		struct vmm_rs_action prog[] = {
			{ .kind = VMM_RS_ACT_PAUSE },
			{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0xd0000000, .size = 2, .value = 0x12345 },
			{ .kind = VMM_RS_ACT_MMIO_READ, .gpa = 0xd0000004, .size = 2 },
			{ .kind = VMM_RS_ACT_PAUSE },
		};
		struct vm_exit vme;
		struct vm_run vmrun = { .vm_exit = &vme };
		CHECK_OK(vmm_rs_guest_set_script(v0, prog, 4, 3));
		CHECK_OK(vm_run(v0, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_PAUSE && vme.inst_length == 1);
		uint64_t pause_rip = vme.rip;
		CHECK_OK(vm_run(v0, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_MMIO && vme.rip == pause_rip + 1);
		CHECK(vme.u.mmio.read == 0 && vme.u.mmio.bytes == 2);
		CHECK(vme.u.mmio.gpa == 0xd0000000 && vme.u.mmio.data == 0x2345);
		CHECK_OK(vm_run(v0, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_MMIO && vme.u.mmio.read == 1);
		CHECK(vme.u.mmio.gpa == 0xd0000004);
		CHECK_OK(vm_set_register(v0, VM_REG_GUEST_RAX, 0xabcdef)); /* the answer */
		CHECK_OK(vm_run(v0, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_PAUSE);
		CHECK_OK(vmm_rs_guest_stats(v0, &gs));
		CHECK(gs.last_read == 0xcdef); /* masked to the access size */

		/* The capability off: the first exit is the MMIO write. */
		CHECK_OK(vm_set_capability(v0, VM_CAP_PAUSE_EXIT, 0));
		CHECK_OK(vmm_rs_guest_set_script(v0, prog, 4, 3));
		CHECK_OK(vm_run(v0, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_MMIO && vme.u.mmio.read == 0);
	}

	watchdog_phase("guest_run_test 8: a callback guest's values and end");
	test_guest_end();
	watchdog_phase("guest_run_test 9: restarts, an NMI by MSI");
	test_restart();

	/* Guest API errors. */
	CHECK_ERR(vmm_rs_guest_set_ops(v0, NULL, NULL), EFAULT);
	{
		struct vmm_rs_guest_ops none = { 0 };
		CHECK_ERR(vmm_rs_guest_set_ops(v0, &none, NULL), EFAULT);
		struct vmm_rs_action bad = { .kind = 42 };
		CHECK_ERR(vmm_rs_guest_set_script(v0, &bad, 1, -1), EINVAL);
		struct vmm_rs_action badsz = { .kind = VMM_RS_ACT_PORT_IN, .size = 3 };
		CHECK_ERR(vmm_rs_guest_set_script(v0, &badsz, 1, -1), EINVAL);
		CHECK_ERR(vmm_rs_guest_set_script(v0, cli_hlt, 2, 2), EINVAL);
		CHECK_ERR(vmm_rs_guest_set_script(v0, NULL, 2, -1), EFAULT);
		CHECK_OK(vmm_rs_guest_clear(v0));
		CHECK_ERR(vmm_rs_guest_stats(v0, NULL), EFAULT);
	}

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
	return test_finish("guest_run_test");
}
