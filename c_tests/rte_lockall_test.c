/*
 * OS-7622, deterministically: vCPU 1's guest writes a redirection-table
 * entry (trigger mode and vector change, pin aimed at vCPU 0) while another
 * thread's lock-all ioctl (VM_ALLOC_MEMSEG) has frozen vCPU 0 and waits for
 * vCPU 1. The interleaving is forced by the guest callback (it returns the
 * IOWIN write only once vCPU 0 is FROZEN), never by sleeps.
 *
 * Passes when every thread finishes: the write completes, the lock-all
 * completes, and vCPU 0's staged TMR bit is applied when it next runs.
 * With the legacy 2019 protocol (cargo feature legacy-rendezvous) the same
 * interleaving deadlocks and the watchdog reports it.
 */
#include <stdatomic.h>

#include "apic_util.h"

#define PIN 9

static struct vcpu *v0, *v1;
static atomic_int at_write_step;

static int
guest_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	(void)cookie;
	(void)vcpuid;
	static int step;
	memset(a, 0, sizeof(*a));
	switch (step++) {
	case 0:
		a->kind = VMM_RS_ACT_STI;
		break;
	case 1: /* IOREGSEL: low half of the pin's RTE */
		a->kind = VMM_RS_ACT_MMIO_WRITE;
		a->gpa = IOAPIC_GPA;
		a->size = 4;
		a->value = 0x10 + 2 * PIN;
		break;
	case 2: /* IOWIN, once the lock-all holds vCPU 0 */
		/* From here on a hang is the deadlock under test. */
		t_watchdog_what = "OS-7622 deadlock: RTE write vs. lock-all did not complete";
		t_watchdog_code = 3;
		atomic_store(&at_write_step, 1);
		while (vmm_rs_vcpu_state(v0) != VCPU_FROZEN)
			sched_yield();
		a->kind = VMM_RS_ACT_MMIO_WRITE;
		a->gpa = IOAPIC_GPA + 0x10;
		a->size = 4;
		a->value = RTE_LEVEL | 0x31; /* edge 0x30 -> level 0x31 */
		break;
	default:
		a->kind = VMM_RS_ACT_HLT;
		break;
	}
	(void)rip;
	return 0;
}

static void *
vcpu1_thread(void *p)
{
	static int exitcode = -1;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	(void)p;
	while (vm_run(v1, &vmrun) == 0) {
		exitcode = vme.exitcode;
		if (vme.exitcode == VM_EXITCODE_REQIDLE)
			break;
	}
	return &exitcode;
}

static void *
locker_thread(void *p)
{
	static int rc;
	struct vm_memseg seg = { .segid = 0, .len = 1 << 20 };
	rc = vmm_ioctl(p, VM_ALLOC_MEMSEG, &seg); /* lock-all + memory exclusive */
	return &rc;
}

int
main(void)
{
	struct vmctx *ctx;
	struct vmm_rs_guest_ops ops = { .next = guest_next };
	struct vmm_rs_ioapic_stats st;
	pthread_t t1, tl;
	void *r1, *rl;

	/*
	 * A hang before the guest's write step is a broken setup, not the
	 * deadlock: it must not count as the legacy build's expected result.
	 */
	t_watchdog_code = 4;
	watchdog_start(10, "setup stalled before the RTE write step");
	CHECK_OK(vm_create("os7622"));
	ctx = vm_open("os7622");
	v0 = vm_vcpu_open(ctx, 0);
	v1 = vm_vcpu_open(ctx, 1);
	CHECK_OK(vm_activate_cpu(v0));
	lapic_enable(v0);
	/*
	 * Programmed while vCPU 0 is the only active vCPU: the 2019 protocol
	 * rendezvouses every active vCPU on this write, and vCPU 1 has no
	 * thread yet.
	 */
	rte_write(v0, PIN, 0x30, 0); /* edge, vector 0x30, to vCPU 0 */
	CHECK_OK(vm_activate_cpu(v1));
	CHECK_OK(vmm_rs_guest_set_ops(v1, &ops, NULL));

	/* vCPU 0 is idle between VM_RUN calls; vCPU 1 runs its guest. */
	pthread_create(&t1, NULL, vcpu1_thread, NULL);
	while (!atomic_load(&at_write_step))
		sched_yield();
	pthread_create(&tl, NULL, locker_thread, ctx);

	pthread_join(t1, &r1);
	pthread_join(tl, &rl);
	CHECK(*(int *)r1 == VM_EXITCODE_REQIDLE);
	CHECK(*(int *)rl == 0);

	/* The write happened with TMR work, and vCPU 0's bit is staged... */
	CHECK((rte_low(v0, PIN) & 0xff) == 0x31);
	CHECK((rte_low(v0, PIN) & RTE_LEVEL) != 0);
	CHECK_OK(vmm_rs_ioapic_stats(ctx, &st));
	CHECK(st.tmr_updates == 1);
	CHECK(lapic_bit(v0, LAPIC_TMR, 0x31) == 0);
	/* ...and applied when vCPU 0 next runs. */
	run_until_halted(v0);
	CHECK(lapic_bit(v0, LAPIC_TMR, 0x31) == 1);

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
	return test_finish("rte_lockall_test");
}
