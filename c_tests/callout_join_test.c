/*
 * vm_destroy() returns only once the VM's timer thread has exited, as
 * FreeBSD's vm_cleanup drains the VM's callouts:
 *  1. right after vm_destroy() the process has no "vmm_rs callouts"
 *     thread left but one the kernel is ending (it used to be woken to
 *     exit, and ran on a moment later: a create at once under a tight
 *     RLIMIT_NPROC could fail);
 *  2. a guest callback may destroy its own VM while the timer thread is
 *     delivering a fast periodic HPET interrupt: the wait ends (watchdog),
 *     and VM_RUN then fails with EBADF.
 * Under an emulator (VMM_RS_RUN_WITH, qemu-user), which wakes a joiner
 * before the joined thread's host side exits, the thread is only checked
 * to go away.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apic_util.h"

#define HPET_GPA 0xFED00000UL
#define HPET_CONFIG 0x10
#define HPET_TCNF(n) (0x100 + 0x20 * (n))
#define HPET_TCMP(n) (0x108 + 0x20 * (n))
#define TCNF_INT_ENB 0x4
#define TCNF_PERIODIC 0x8
#define TCNF_VAL_SET 0x40

/*
 * Threads of this process named as the library names a VM's timer thread
 * (the kernel keeps 15 characters of a thread's name) that are not
 * exiting. A joined thread may stay listed a moment, in the kernel's
 * exit path (PF_EXITING, 0x4, in the flags of its stat): a join returns
 * when the thread's user side is done, before the kernel removes it.
 */
static int
callout_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	CHECK(d != NULL);
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char path[300], stat[1024] = "";
		unsigned long flags = 0;
		const char *p;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
		f = fopen(path, "r");
		if (f == NULL)
			continue; /* gone meanwhile */
		if (fgets(stat, sizeof(stat), f) == NULL)
			stat[0] = '\0';
		fclose(f);
		/* "tid (comm) state ppid pgrp session tty tpgid flags ..." */
		if (strstr(stat, " (vmm_rs callouts) ") == NULL)
			continue;
		p = strrchr(stat, ')');
		CHECK(p != NULL && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %lu", &flags) == 1);
		if (!(flags & 0x4))
			n++;
	}
	closedir(d);
	return n;
}

/* The timer threads are gone now, or (under an emulator) go away. */
static int
check_no_callout_thread(int round)
{
	int left = callout_threads();

	if (getenv("VMM_RS_RUN_WITH") != NULL) {
		while (left != 0) {
			sched_yield();
			left = callout_threads();
		}
	}
	CHECK(left == 0);
	if (left != 0)
		printf("round %d: %d timer thread(s) still there after vm_destroy\n", round, left);
	return left == 0;
}

static void
hpet_write(struct vcpu *v, uint64_t off, uint64_t val)
{
	CHECK_OK(vm_readwrite_kernemu_device(v, HPET_GPA + off, true, 8, &val));
}

static struct vmctx *cb_ctx;
static int cb_calls, destroyed_in_cb;

static int
destroy_in_callback(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	(void)cookie;
	(void)vcpuid;
	(void)rip;
	/* Some guest steps first, with the HPET firing meanwhile. */
	if (++cb_calls == 200) {
		vm_destroy(cb_ctx);
		check_no_callout_thread(-1);
		destroyed_in_cb = 1;
	}
	*a = (struct vmm_rs_action){ .kind = VMM_RS_ACT_COMPUTE };
	return 0;
}

int
main(void)
{
	watchdog_start(60, "callout_join_test (vm_destroy never returned)");

	/* 1. The thread is gone when vm_destroy returns, every time. */
	watchdog_phase("callout_join_test 1: destroy joins the timer thread");
	CHECK(callout_threads() == 0);
	for (int i = 0; i < 200; i++) {
		CHECK_OK(vm_create("callout-join"));
		struct vmctx *ctx = vm_open("callout-join");
		CHECK(ctx != NULL);
		if (ctx == NULL)
			break;
		/* The thread names itself once it runs. */
		while (callout_threads() != 1)
			sched_yield();
		vm_destroy(ctx);
		if (!check_no_callout_thread(i))
			break;
	}

	/* 2. A guest callback destroys its own VM while the timer thread
	 * delivers a 100 us periodic HPET interrupt to vCPU 1. */
	watchdog_phase("callout_join_test 2: destroy from a guest callback");
	{
		static const struct vmm_rs_guest_ops ops = { .next = destroy_in_callback };
		struct vm_exit vme;
		struct vm_run vmrun = { .vm_exit = &vme };
		struct vcpu *v0, *v1;

		CHECK_OK(vm_create("callout-join-cb"));
		cb_ctx = vm_open("callout-join-cb");
		CHECK(cb_ctx != NULL);
		if (cb_ctx == NULL)
			return test_finish("callout_join_test");
		v0 = vm_vcpu_open(cb_ctx, 0);
		v1 = vm_vcpu_open(cb_ctx, 1);
		CHECK_OK(vm_activate_cpu(v0));
		CHECK_OK(vm_activate_cpu(v1));
		lapic_enable(v1);
		rte_write(v0, 25, 0x51, 1);
		hpet_write(v0, HPET_TCNF(2), 25 << 9 | TCNF_INT_ENB | TCNF_PERIODIC | TCNF_VAL_SET);
		hpet_write(v0, HPET_TCMP(2), 1678);
		hpet_write(v0, HPET_CONFIG, 1);
		/* The timer thread delivers (no vCPU runs yet). */
		while (!lapic_bit(v1, LAPIC_IRR, 0x51))
			sched_yield();
		CHECK_OK(vmm_rs_guest_set_ops(v0, &ops, NULL));

		CHECK_ERR(vm_run(v0, &vmrun), EBADF);
		CHECK(cb_calls == 200);
		CHECK(destroyed_in_cb);
		vm_vcpu_close(v0);
		vm_vcpu_close(v1);
	}
	check_no_callout_thread(-2);
	return test_finish("callout_join_test");
}
