/*
 * The RTC and CMOS (FreeBSD vrtc.c) through libvmmapi, vmm_ioctl and a
 * guest on ports 0x70/0x71:
 *  1. bhyve's rtc_init: memory sizes into NVRAM, then the time;
 *  2. the guest reads the date in BCD, and sets it under the SET bit;
 *  3. the periodic interrupt reaches a halted guest through IOAPIC pin 8
 *     (the vCPU sleeps in HLT; nothing but the RTC wakes it);
 *  4. a two-byte access to port 0x71 makes vm_run fail with EIO;
 *  5. VM_REINIT stops the interrupts and keeps the time and NVRAM;
 *  6. the ACPI PM timer, the other clock emulated inside VM_RUN (port
 *     0x408, 3.579545 MHz, 4-byte reads only).
 */
#include <time.h>

#include "apic_util.h"

#define MB (1024UL * 1024)
#define RTC_VEC 0x48
/* 2026-12-01 19:24:27 UTC, a Tuesday. */
#define T 1796153067

static struct vm_exit vme;
static struct vm_run vmrun = { .vm_exit = &vme };

#define OUT(p, v) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1, .value = (v) }
#define IN(p) { .kind = VMM_RS_ACT_PORT_IN, .port = (p), .size = 1 }

/* What the guest reads from CMOS byte `off`. */
static uint64_t
guest_read(struct vcpu *v, int off)
{
	struct vmm_rs_action a[] = { OUT(0x70, off), IN(0x71) };
	struct vmm_rs_guest_stats gs;
	run_script_to_port80(v, a, 2);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	return gs.last_read;
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;
	uint8_t b;
	time_t secs;

	watchdog_start(60, "rtc_test");
	CHECK_OK(vm_create("rtc"));
	ctx = vm_open("rtc");
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));

	/* 1. bhyve's rtc_init, for 4 GiB: 3 GiB low, 1 GiB high. */
	watchdog_phase("rtc_test 1: bhyve's rtc_init");
	CHECK_OK(vm_setup_memory(ctx, 4096 * MB, VM_MMAP_ALL));
	{
		size_t lomem = (vm_get_lowmem_size(ctx) - 16 * MB) / (64 * 1024);
		size_t himem = vm_get_highmem_size(ctx) / (64 * 1024);
		CHECK_OK(vm_rtc_write(ctx, 0x34, lomem));
		CHECK_OK(vm_rtc_write(ctx, 0x35, lomem >> 8));
		CHECK_OK(vm_rtc_write(ctx, 0x5b, himem));
		CHECK_OK(vm_rtc_write(ctx, 0x5c, himem >> 8));
		CHECK_OK(vm_rtc_write(ctx, 0x5d, himem >> 16));
		CHECK_OK(vm_rtc_settime(ctx, T));
		CHECK_OK(vm_rtc_read(ctx, 0x35, &b));
		CHECK(b == ((3072 - 16) * 16) >> 8);
		CHECK_OK(vm_rtc_read(ctx, 0x5c, &b));
		CHECK(b == (1024 * 16) >> 8);
		struct vm_rtc_time t = { 0 };
		CHECK_OK(vmm_ioctl(ctx, VM_RTC_GETTIME, &t));
		CHECK(t.secs >= T && t.secs < T + 600);
		/*
		 * Read at once, it is the time set: a second may pass between
		 * the calls, so set and read again until one pair shows it.
		 */
		int exact = 0;
		for (int i = 0; i < 20 && !exact; i++) {
			CHECK_OK(vm_rtc_settime(ctx, T));
			CHECK_OK(vm_rtc_gettime(ctx, &secs));
			exact = secs == T;
		}
		CHECK(exact);
	}

	/* 2. The guest reads the date (24-hour BCD), then sets another. */
	watchdog_phase("rtc_test 2: the guest reads and sets the date");
	CHECK(guest_read(v, 0x09) == 0x26 && guest_read(v, 0x32) == 0x20);
	CHECK(guest_read(v, 0x08) == 0x12 && guest_read(v, 0x07) == 0x01);
	CHECK(guest_read(v, 0x06) == 3); /* Tuesday (Sunday = 1) */
	CHECK(guest_read(v, 0x35) == ((3072 - 16) * 16) >> 8); /* what the host wrote */
	{
		/* 2000-02-29 12:00:00, written under SET. */
		struct vmm_rs_action set[] = {
			OUT(0x70, 0x0b), OUT(0x71, 0x82),
			OUT(0x70, 0x00), OUT(0x71, 0x00), OUT(0x70, 0x02), OUT(0x71, 0x00),
			OUT(0x70, 0x04), OUT(0x71, 0x12), OUT(0x70, 0x07), OUT(0x71, 0x29),
			OUT(0x70, 0x08), OUT(0x71, 0x02), OUT(0x70, 0x09), OUT(0x71, 0x00),
			OUT(0x70, 0x32), OUT(0x71, 0x20),
		};
		run_script_to_port80(v, set, sizeof(set) / sizeof(set[0]));
		CHECK_OK(vm_rtc_gettime(ctx, &secs));
		CHECK(secs == -1); /* halted */
		CHECK_ERR(vm_rtc_settime(ctx, T), EBUSY);
		struct vmm_rs_action go[] = { OUT(0x70, 0x0b), OUT(0x71, 0x02) };
		run_script_to_port80(v, go, 2);
		CHECK_OK(vm_rtc_gettime(ctx, &secs));
		CHECK(secs >= 951825600 && secs < 951825600 + 600);
		CHECK_OK(vm_rtc_read(ctx, 0x04, &b));
		CHECK(b == 0x12);
	}

	/* 3. The periodic interrupt (1024 Hz) wakes the halted guest. */
	watchdog_phase("rtc_test 3: the periodic interrupt wakes a halted guest");
	lapic_enable(v);
	rte_write(v, 8, RTC_VEC, 0); /* edge, fixed, to APIC 0 */
	{
		struct vmm_rs_action periodic[] = {
			OUT(0x70, 0x0a), OUT(0x71, 0x26), OUT(0x70, 0x0b), OUT(0x71, 0x42),
			{ .kind = VMM_RS_ACT_STI }, { .kind = VMM_RS_ACT_WAIT_INTR_EOI },
			/* Interrupts off before register C is read: the read
			 * re-arms IRQF, and the next tick is 1 ms away. */
			{ .kind = VMM_RS_ACT_CLI },
			OUT(0x70, 0x0c), IN(0x71),
		};
		struct vmm_rs_guest_stats gs;
		run_script_to_port80(v, periodic, sizeof(periodic) / sizeof(periodic[0]));
		CHECK_OK(vmm_rs_guest_stats(v, &gs));
		CHECK(gs.interrupts == 1 && gs.last_vector == RTC_VEC);
		CHECK(gs.last_read == 0xc0); /* IRQF | PF, cleared by that read */
	}

	/* 4. Port 0x71 takes single bytes: anything else fails vm_run. */
	watchdog_phase("rtc_test 4: a wide access fails vm_run");
	{
		struct vmm_rs_action wide[] = { { .kind = VMM_RS_ACT_PORT_IN, .port = 0x71, .size = 2 } };
		CHECK_OK(vmm_rs_guest_set_script(v, wide, 1, -1));
		CHECK_ERR(vm_run(v, &vmrun), EIO);
	}

	/* 5. VM_REINIT: interrupt enables off, the time and NVRAM stay. */
	watchdog_phase("rtc_test 5: VM_REINIT");
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED);
	CHECK_OK(vm_reinit(ctx));
	CHECK_OK(vm_rtc_read(ctx, 0x0b, &b));
	CHECK(b == 0x02); /* PIE cleared, 24-hour kept */
	CHECK_OK(vm_rtc_read(ctx, 0x5c, &b));
	CHECK(b == (1024 * 16) >> 8);
	CHECK_OK(vm_rtc_gettime(ctx, &secs));
	CHECK(secs >= 951825600 && secs < 951825600 + 600);

	/* 6. The PM timer counts at 3.579545 MHz: 1 ms of host time is at
	 * least 3579 counts between two guest reads. */
	watchdog_phase("rtc_test 6: the PM timer");
	CHECK_OK(vm_activate_cpu(v));
	{
		struct vmm_rs_action rd[] = { { .kind = VMM_RS_ACT_PORT_IN, .port = 0x408, .size = 4 } };
		struct vmm_rs_guest_stats gs;
		struct timespec t0, t;
		run_script_to_port80(v, rd, 1);
		CHECK_OK(vmm_rs_guest_stats(v, &gs));
		uint32_t first = (uint32_t)gs.last_read;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do /* let 1 ms of host time pass: the property under test */
			clock_gettime(CLOCK_MONOTONIC, &t);
		while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 1000000L);
		run_script_to_port80(v, rd, 1);
		CHECK_OK(vmm_rs_guest_stats(v, &gs));
		CHECK((uint32_t)gs.last_read - first >= 3579);
		struct vmm_rs_action narrow[] = { { .kind = VMM_RS_ACT_PORT_IN, .port = 0x408, .size = 2 } };
		CHECK_OK(vmm_rs_guest_set_script(v, narrow, 1, -1));
		CHECK_ERR(vm_run(v, &vmrun), EIO);
	}

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("rtc_test");
}
