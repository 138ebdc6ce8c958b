/*
 * The 8254 PIT (FreeBSD vatpit.c) as a guest sees it on ports 0x40-0x43
 * and 0x61: a latched count, channel 2's output after a mode 0 count, and
 * channel 0 in mode 2 waking a halted guest through IOAPIC pin 2.
 */
#include <time.h>

#include "apic_util.h"

#define PIT_VEC 0x30

static struct vm_exit vme;
static struct vm_run vmrun = { .vm_exit = &vme };

#define OUT(p, v) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1, .value = (v) }
#define IN(p, n) { .kind = VMM_RS_ACT_PORT_IN, .port = (p), .size = (n) }

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;

	watchdog_start(60, "pit_test");
	CHECK_OK(vm_create("pit"));
	ctx = vm_open("pit");
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));
	lapic_enable(v);

	/* Never loaded, channel 2's output reads high on port 0x61 (FreeBSD);
	 * loaded in mode 0 with 0xffff (54.9 ms), it reads low right after:
	 * unless the run took that long (a stalled thread, a slow emulator),
	 * when high is right too. */
	watchdog_phase("pit_test 1: port 0x61 and a latched count");
	{
		struct vmm_rs_action fresh[] = { IN(0x61, 1) };
		CHECK(run_script_to_port80(v, fresh, 1) == 0x20);
		struct vmm_rs_action load[] = {
			OUT(0x43, 0xb0), OUT(0x42, 0xff), OUT(0x42, 0xff), IN(0x61, 1),
		};
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		uint64_t nmisc = run_script_to_port80(v, load, 4);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
		CHECK((nmisc & 0x20) == 0 || ns >= 54000000LL);
		/* A latched count comes back LSB first, from what was loaded. */
		struct vmm_rs_action latch[] = { OUT(0x43, 0x80), IN(0x42, 1) };
		uint64_t lsb = run_script_to_port80(v, latch, 2);
		struct vmm_rs_action msb[] = { IN(0x42, 1) };
		uint64_t count = run_script_to_port80(v, msb, 1) << 8 | lsb;
		CHECK(count > 0 && count <= 0xffff);
	}

	/* Channel 0, mode 2 at 1 kHz: the halted guest takes IRQ 0 on pin 2. */
	watchdog_phase("pit_test 2: channel 0 wakes a halted guest");
	rte_write(v, 2, PIT_VEC, 0);
	{
		struct vmm_rs_action prog[] = {
			OUT(0x43, 0x34), OUT(0x40, 1193 & 0xff), OUT(0x40, 1193 >> 8),
			{ .kind = VMM_RS_ACT_STI }, { .kind = VMM_RS_ACT_WAIT_INTR_EOI },
			{ .kind = VMM_RS_ACT_CLI },
		};
		struct vmm_rs_guest_stats gs;
		run_script_to_port80(v, prog, 6);
		CHECK_OK(vmm_rs_guest_stats(v, &gs));
		CHECK(gs.last_vector == PIT_VEC);
	}

	/* The mode port cannot be read: vm_run fails with EIO. */
	watchdog_phase("pit_test 3: refused accesses");
	{
		struct vmm_rs_action bad[] = { IN(0x43, 1) };
		CHECK_OK(vmm_rs_guest_set_script(v, bad, 1, -1));
		CHECK_ERR(vm_run(v, &vmrun), EIO);
		struct vmm_rs_action wide[] = { IN(0x40, 2) };
		CHECK_OK(vmm_rs_guest_set_script(v, wide, 1, -1));
		CHECK_ERR(vm_run(v, &vmrun), EIO);
	}

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("pit_test");
}
