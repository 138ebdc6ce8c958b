/*
 * The HPET (FreeBSD vhpet.c) through libvmmapi, vmm_ioctl, the kernemu
 * ioctls and a guest's MMIO at 0xFED00000:
 *  1. the capabilities bhyve puts in its ACPI HPET table;
 *  2. a guest programs a periodic timer on IOAPIC pin 25 and sleeps in
 *     HLT until it fires; 3. a one-shot timer delivered as an MSI (FSB)
 *     to another vCPU (whose APIC has no stray pin-25 ticks pending);
 *  4. VM_REINIT brings back a stopped HPET.
 */
#include "apic_util.h"

#define HPET_GPA 0xFED00000UL
#define HPET_CONFIG 0x10
#define HPET_COUNTER 0xf0
#define HPET_TCNF(n) (0x100 + 0x20 * (n))
#define HPET_TCMP(n) (0x108 + 0x20 * (n))
#define HPET_TFSB(n) (0x110 + 0x20 * (n))
#define TCNF_INT_ENB 0x4
#define TCNF_PERIODIC 0x8
#define TCNF_VAL_SET 0x40
#define TCNF_FSB_EN 0x4000

#define W8(off, v) { .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = HPET_GPA + (off), .size = 8, .value = (v) }

/* Runs `n` actions, then sti, waits for an interrupt and EOIs it, cli,
 * and ends vm_run; returns the vector taken. */
static int
run_until_interrupt(struct vcpu *v, const struct vmm_rs_action *acts, int n)
{
	struct vmm_rs_action prog[16];
	struct vmm_rs_guest_stats gs;
	memcpy(prog, acts, n * sizeof(*acts));
	prog[n] = (struct vmm_rs_action){ .kind = VMM_RS_ACT_STI };
	prog[n + 1] = (struct vmm_rs_action){ .kind = VMM_RS_ACT_WAIT_INTR_EOI };
	prog[n + 2] = (struct vmm_rs_action){ .kind = VMM_RS_ACT_CLI };
	run_script_to_port80(v, prog, n + 3);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	return gs.last_vector;
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v, *v1;
	uint32_t caps = 0;
	uint64_t val = 0;

	watchdog_start(60, "hpet_test");
	CHECK_OK(vm_create("hpet"));
	ctx = vm_open("hpet");
	v = vm_vcpu_open(ctx, 0);
	v1 = vm_vcpu_open(ctx, 1);
	CHECK_OK(vm_activate_cpu(v));
	CHECK_OK(vm_activate_cpu(v1));
	lapic_enable(v);
	lapic_enable(v1);

	/* 1. Capabilities: vendor 8086, 8 timers, revision 1, 32-bit counter. */
	watchdog_phase("hpet_test 1: capabilities");
	CHECK_OK(vm_get_hpet_capabilities(ctx, &caps));
	CHECK(caps == 0x80860701);
	CHECK_OK(vm_get_hpet_capabilities(ctx, NULL)); /* libvmmapi allows it */
	{
		struct vm_hpet_cap c = { 0 };
		CHECK_OK(vmm_ioctl(ctx, VM_GET_HPET_CAPABILITIES, &c));
		CHECK(c.capabilities == 0x80860701);
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_HPET_CAPABILITIES, NULL), EFAULT);
	}
	CHECK_OK(vm_readwrite_kernemu_device(v, HPET_GPA, false, 8, &val));
	CHECK(val == 0x038D7EA480860701ULL); /* period 59604644 fs */
	CHECK_OK(vm_readwrite_kernemu_device(v, HPET_GPA + HPET_TCNF(5), false, 8, &val));
	CHECK(val == 0xff00000000008010ULL); /* pins 24-31, periodic, FSB */
	/* VM_GET_KERNEMU_DEV of 16-128 bytes: as FreeBSD's vhpet, a read of
	 * other than 4 or 8 bytes reads 0. */
	for (unsigned w = 4; w <= 7; w++) {
		struct vm_readwrite_kernemu_device k = { .vcpuid = 0, .access_width = w, .gpa = HPET_GPA, .value = 1 };
		CHECK_OK(vmm_ioctl(ctx, VM_GET_KERNEMU_DEV, &k));
		CHECK(k.value == 0);
	}

	/* 2. A periodic timer (1 ms) on pin 25 wakes the halted guest. */
	watchdog_phase("hpet_test 2: a periodic timer wakes a halted guest");
	rte_write(v, 25, 0x51, 0);
	{
		struct vmm_rs_action prog[] = {
			W8(HPET_TCNF(2), 25 << 9 | TCNF_INT_ENB | TCNF_PERIODIC | TCNF_VAL_SET),
			W8(HPET_TCMP(2), 16777),
			W8(HPET_CONFIG, 1),
		};
		CHECK(run_until_interrupt(v, prog, 3) == 0x51);
		CHECK_OK(vm_readwrite_kernemu_device(v, HPET_GPA + HPET_COUNTER, false, 8, &val));
		CHECK(val >= 16777); /* the counter ran to the first match at least */
	}

	/* 3. A one-shot timer delivered as an MSI (FSB) to APIC 1. */
	watchdog_phase("hpet_test 3: FSB (MSI) delivery");
	{
		struct vmm_rs_action prog[] = {
			W8(HPET_TCNF(2), 0), /* timer 2 off */
			W8(HPET_CONFIG, 0),
			W8(HPET_COUNTER, 0),
			W8(HPET_TFSB(3), 0xFEE01000ULL << 32 | 0x52),
			W8(HPET_TCNF(3), TCNF_INT_ENB | TCNF_FSB_EN),
			W8(HPET_TCMP(3), 1000),
			W8(HPET_CONFIG, 1),
		};
		CHECK(run_until_interrupt(v1, prog, 7) == 0x52);
	}

	/* 4. VM_REINIT: a new HPET, counter stopped at 0. */
	watchdog_phase("hpet_test 4: VM_REINIT");
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
	{
		/* Each vCPU returns SUSPENDED once both have arrived. */
		pthread_t t0, t1;
		pthread_create(&t0, NULL, run_once_thread, v);
		pthread_create(&t1, NULL, run_once_thread, v1);
		pthread_join(t0, NULL);
		pthread_join(t1, NULL);
	}
	CHECK_OK(vm_reinit(ctx)); /* EBUSY unless both acknowledged the suspend */
	CHECK_OK(vm_readwrite_kernemu_device(v, HPET_GPA + HPET_CONFIG, false, 8, &val));
	CHECK(val == 0);
	CHECK_OK(vm_readwrite_kernemu_device(v, HPET_GPA + HPET_COUNTER, false, 8, &val));
	CHECK(val == 0);
	CHECK_OK(vm_readwrite_kernemu_device(v, HPET_GPA + HPET_TFSB(3), false, 8, &val));
	CHECK(val == 0);

	vm_vcpu_close(v);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
	return test_finish("hpet_test");
}
