/*
 * Every command's lock class (semantics.md section 3), seen from a vCPU
 * running a guest:
 *
 * - a lock-one or lock-all command takes the vCPU out of VM_RUN: its
 *   VM_RUN returns VM_EXITCODE_REQIDLE (a command that forgot to lock
 *   leaves the guest running, and the watchdog names it);
 * - any other command completes while the vCPU is stuck inside its guest
 *   (a callback that waits for the test): one that waited for the vCPU
 *   would hang, and the watchdog names it.
 *
 * The commands' own results do not matter here: most arguments are zero,
 * chosen so that nothing changes what the guest does.
 */
#include <stdatomic.h>

#include "apic_util.h"

static struct vcpu *v0;
static pthread_mutex_t gate_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_closed;  /* the guest stops at its next action */
static int guest_stuck;  /* ... and has */
static atomic_int reqidles;
static atomic_int stop;

/* An endless stream of COMPUTE actions that stops while the gate is closed. */
static int
guest_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	(void)cookie;
	(void)vcpuid;
	(void)rip;
	pthread_mutex_lock(&gate_mtx);
	while (gate_closed) {
		guest_stuck = 1;
		pthread_cond_broadcast(&gate_cv);
		pthread_cond_wait(&gate_cv, &gate_mtx);
	}
	guest_stuck = 0;
	pthread_mutex_unlock(&gate_mtx);
	memset(a, 0, sizeof(*a));
	a->kind = VMM_RS_ACT_COMPUTE;
	return 0;
}

static void *
runner(void *p)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	(void)p;
	while (!atomic_load(&stop)) {
		if (vm_run(v0, &vmrun) != 0) {
			CHECK(0 && "vm_run failed");
			break;
		}
		/* BOGUS: a kick that was no request (an interrupt sent);
		 * DEBUG: the end. */
		if (vme.exitcode == VM_EXITCODE_REQIDLE)
			atomic_fetch_add(&reqidles, 1);
		else
			CHECK(vme.exitcode == VM_EXITCODE_BOGUS || vme.exitcode == VM_EXITCODE_DEBUG);
	}
	return NULL;
}

struct cmd {
	unsigned long cmd;
	const char *name;
};
#define C(x) { x, #x }

/* Lock one vCPU (from IDLE) or lock all of them. */
static const struct cmd locking[] = {
	C(VM_SET_REGISTER), C(VM_GET_REGISTER), C(VM_SET_SEGMENT_DESCRIPTOR),
	C(VM_GET_SEGMENT_DESCRIPTOR), C(VM_SET_REGISTER_SET), C(VM_GET_REGISTER_SET),
	C(VM_SET_CAPABILITY), C(VM_GET_CAPABILITY), C(VM_ACTIVATE_CPU),
	C(VM_SET_INTINFO), C(VM_GET_INTINFO), C(VM_INJECT_EXCEPTION),
	C(VM_RESTART_INSTRUCTION), C(VM_SET_X2APIC_STATE), C(VM_SET_KERNEMU_DEV),
	C(VM_GET_KERNEMU_DEV), C(VM_GLA2GPA), C(VM_GLA2GPA_NOFAULT),
	C(VM_ALLOC_MEMSEG), C(VM_MMAP_MEMSEG), C(VM_MUNMAP_MEMSEG), C(VM_REINIT),
	C(VM_BIND_PPTDEV), C(VM_UNBIND_PPTDEV), C(VM_MAP_PPTDEV_MMIO),
	C(VM_UNMAP_PPTDEV_MMIO),
};

/* Guest memory shared, or no lock at all. */
static const struct cmd nonlocking[] = {
	C(VM_GET_MEMSEG), C(VM_MMAP_GETNEXT),
	C(VM_IOAPIC_ASSERT_IRQ), C(VM_IOAPIC_DEASSERT_IRQ), C(VM_IOAPIC_PULSE_IRQ),
	C(VM_IOAPIC_PINCOUNT), C(VM_LAPIC_MSI), C(VM_LAPIC_IRQ), C(VM_LAPIC_LOCAL_IRQ),
	C(VM_INJECT_NMI), C(VM_GET_X2APIC_STATE), C(VM_STATS), C(VM_STAT_DESC),
	C(VM_ISA_ASSERT_IRQ), C(VM_ISA_DEASSERT_IRQ), C(VM_ISA_PULSE_IRQ),
	C(VM_ISA_SET_IRQ_TRIGGER), C(VM_GET_CPUS), C(VM_SUSPEND_CPU), C(VM_RESUME_CPU),
	C(VM_SET_TOPOLOGY), C(VM_GET_TOPOLOGY), C(VM_RTC_READ), C(VM_RTC_WRITE),
	C(VM_RTC_SETTIME), C(VM_RTC_GETTIME), C(VM_GET_HPET_CAPABILITIES),
	C(VM_PPTDEV_MSI), C(VM_PPTDEV_MSIX), C(VM_PPTDEV_DISABLE_MSIX),
	C(VM_SUSPEND), /* how 0, VM_SUSPEND_NONE: refused, nothing suspended */
};

/* A zeroed argument for `cmd`, with what keeps the guest undisturbed. */
static void
argument(unsigned long cmd, uint64_t *buf, size_t size)
{
	memset(buf, 0, size);
	switch (cmd) {
	case VM_INJECT_EXCEPTION: /* vector 32: refused, nothing queued */
		((struct vm_exception *)buf)->vector = 32;
		break;
	case VM_SUSPEND_CPU:
	case VM_RESUME_CPU: /* vCPU 1 is not active: refused */
		((struct vm_activate_cpu *)buf)->vcpuid = 1;
		break;
	case VM_GET_MEMSEG:
		((struct vm_memseg *)buf)->segid = 0;
		break;
	case VM_STAT_DESC:
		((struct vm_stat_desc *)buf)->index = 0;
		break;
	case VM_SET_TOPOLOGY: /* what it is already */
		*(struct vm_cpu_topology *)buf = (struct vm_cpu_topology){ 1, 1, 1, 0 };
		break;
	}
}

int
main(void)
{
	uint64_t buf[64]; /* larger than any argument struct */
	pthread_t t;

	watchdog_start(60, "lock_class_test");
	CHECK_OK(vm_create("lockclass"));
	struct vmctx *ctx = vm_open("lockclass");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("lock_class_test");
	v0 = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v0));
	struct vmm_rs_guest_ops ops = { .next = guest_next };
	CHECK_OK(vmm_rs_guest_set_ops(v0, &ops, NULL));
	CHECK(pthread_create(&t, NULL, runner, NULL) == 0);

	for (size_t i = 0; i < sizeof(locking) / sizeof(locking[0]); i++) {
		/* The watchdog names a command that leaves the guest running. */
		watchdog_phase(locking[i].name);
		while (vmm_rs_vcpu_state(v0) != VCPU_RUNNING)
			sched_yield();
		int before = atomic_load(&reqidles);
		argument(locking[i].cmd, buf, sizeof(buf));
		(void)vmm_ioctl(ctx, locking[i].cmd, buf);
		while (atomic_load(&reqidles) == before)
			sched_yield();
	}

	for (size_t i = 0; i < sizeof(nonlocking) / sizeof(nonlocking[0]); i++) {
		pthread_mutex_lock(&gate_mtx);
		gate_closed = 1;
		while (!guest_stuck)
			pthread_cond_wait(&gate_cv, &gate_mtx);
		pthread_mutex_unlock(&gate_mtx);
		/* The watchdog names a command that waits for the vCPU. */
		watchdog_phase(nonlocking[i].name);
		CHECK(vmm_rs_vcpu_state(v0) == VCPU_RUNNING);
		argument(nonlocking[i].cmd, buf, sizeof(buf));
		(void)vmm_ioctl(ctx, nonlocking[i].cmd, buf);
		pthread_mutex_lock(&gate_mtx);
		gate_closed = 0;
		pthread_cond_broadcast(&gate_cv);
		pthread_mutex_unlock(&gate_mtx);
	}
	CHECK(atomic_load(&reqidles) == (int)(sizeof(locking) / sizeof(locking[0])));

	watchdog_phase("stopping the runner");
	atomic_store(&stop, 1);
	CHECK_OK(vm_suspend_cpu(v0)); /* a DEBUG exit ends its VM_RUN */
	pthread_join(t, NULL);
	vm_vcpu_close(v0);
	vm_destroy(ctx);
	return test_finish("lock_class_test");
}
