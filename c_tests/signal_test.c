/*
 * Signals and the library's own thread (README "Signals"):
 *  1. a VM's timer thread blocks every signal, whatever the mask of the
 *     thread that called vm_create (it used to inherit that mask, and so
 *     took process-directed signals the program's threads had blocked);
 *  2. the usual pattern works: block SIGTERM after vm_create, then
 *     sigwait() for it (the process used to die of it, on the timer
 *     thread);
 *  3. a signal to a thread in vm_run whose guest sleeps in HLT runs the
 *     handler and vm_run goes on: it returns for the guest's own exit once
 *     an interrupt wakes it (no VM_EXITCODE_BOGUS, as FreeBSD's);
 *  4. the same with a handler without SA_RESTART: vm_run still succeeds,
 *     and leaves errno as it was (it read EINTR from the interrupted wait);
 *  5. with no signal at all: a HLT that its local APIC timer ends leaves
 *     errno as it was (it read ETIMEDOUT from the timed wait).
 * Under an emulator (VMM_RS_RUN_WITH) part 1 is skipped: /proc shows the
 * emulator's own host-side masks; under ThreadSanitizer, parts 3 and 4.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apic_util.h"

/* SigBlk of the library's timer threads, -1 per thread that is not
 * fully blocked; returns how many were seen. */
static int
timer_threads_blocking_all(int *not_blocking)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int seen = 0;

	*not_blocking = 0;
	CHECK(d != NULL);
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		char path[300], line[256], comm[32] = "";
		unsigned long long blk = 0;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(comm, sizeof(comm), f) == NULL)
			comm[0] = '\0';
		fclose(f);
		if (strncmp(comm, "vmm_rs callouts", 15) != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "SigBlk: %llx", &blk) == 1)
				break;
		fclose(f);
		seen++;
		/* Signals 1-31 but SIGKILL and SIGSTOP, which cannot be blocked. */
		unsigned long long want = 0x7fffffffULL & ~(1ULL << (SIGKILL - 1)) & ~(1ULL << (SIGSTOP - 1));
		if ((blk & want) != want) {
			printf("timer thread %s: SigBlk %016llx\n", e->d_name, blk);
			(*not_blocking)++;
		}
	}
	closedir(d);
	return seen;
}

static atomic_int handled;

static void
on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&handled, 1);
}

static void *
run_to_exit(void *v)
{
	static struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	/* A value no call of the library sets: a success must leave it. */
	errno = EDOM;
	CHECK(vm_run(v, &vmrun) == 0);
	CHECK(errno == EDOM);
	if (errno != EDOM)
		printf("errno after a successful vm_run: %d\n", errno);
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);
	return NULL;
}

/* Parts 3 and 4: 100 signals to a thread whose guest (on vCPU `vcpuid`)
 * sleeps in HLT, with a handler installed with `sa_flags`; then an
 * interrupt ends the HLT. */
/* Part 5: twenty HLTs, each ended by a one-shot local APIC timer whose
 * interrupt the guest EOIs, on vCPU `vcpuid`; vm_run must leave errno
 * alone each time. */
static void
timer_ends_a_sleep(struct vmctx *ctx, int vcpuid)
{
	const struct vmm_rs_action script[] = {
		{ .kind = VMM_RS_ACT_STI },
		{ .kind = VMM_RS_ACT_WAIT_INTR_EOI },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 },
	};
	struct vcpu *v = vm_vcpu_open(ctx, vcpuid);

	CHECK(v != NULL);
	if (v == NULL)
		return;
	CHECK_OK(vm_activate_cpu(v));
	lapic_enable(v);
	kwrite(v, LAPIC_GPA + 0x3e0, 0xb);  /* divide by 1 */
	kwrite(v, LAPIC_GPA + 0x320, 0x40); /* one-shot, vector 0x40 */
	for (int i = 0; i < 20; i++) {
		CHECK_OK(vmm_rs_guest_set_script(v, script, 3, -1));
		kwrite(v, LAPIC_GPA + 0x380, 1000000); /* initial count */
		run_to_exit(v);
	}
	vm_vcpu_close(v);
}

static void
signals_to_a_sleeping_vcpu(struct vmctx *ctx, int vcpuid, int sa_flags)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = sa_flags };
	const struct vmm_rs_action script[] = {
		{ .kind = VMM_RS_ACT_STI },
		{ .kind = VMM_RS_ACT_HLT },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 },
	};
	struct vcpu *v0;
	pthread_t t;

	atomic_store(&handled, 0);
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	v0 = vm_vcpu_open(ctx, vcpuid);
	CHECK(v0 != NULL);
	if (v0 == NULL)
		return;
	CHECK_OK(vm_activate_cpu(v0));
	lapic_enable(v0);
	CHECK_OK(vmm_rs_guest_set_script(v0, script, 3, -1));
	CHECK(pthread_create(&t, NULL, run_to_exit, v0) == 0);
	wait_state(v0, VCPU_SLEEPING);
	for (int i = 1; i <= 100; i++) {
		CHECK(pthread_kill(t, SIGUSR1) == 0);
		while (atomic_load(&handled) < i)
			sched_yield();
	}
	/* Still asleep in the guest's HLT. */
	CHECK(vmm_rs_vcpu_state(v0) == VCPU_SLEEPING);
	CHECK_OK(vm_lapic_irq(v0, 0x40));
	CHECK(pthread_join(t, NULL) == 0);
	vm_vcpu_close(v0);
}

int
main(void)
{
	sigset_t term, none;
	struct vmctx *ctx;

	watchdog_start(60, "signal_test");
	sigemptyset(&none);
	pthread_sigmask(SIG_SETMASK, &none, NULL);
	CHECK_OK(vm_create("signal-test"));
	ctx = vm_open("signal-test");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("signal_test");

	/* 1. The timer thread blocks everything (the creator blocked nothing). */
	watchdog_phase("signal_test 1: the timer thread's mask");
	if (getenv("VMM_RS_RUN_WITH") == NULL) {
		int seen, not_blocking;

		/* The thread names itself once it runs. */
		while ((seen = timer_threads_blocking_all(&not_blocking)) == 0)
			sched_yield();
		CHECK(seen == 1);
		CHECK(not_blocking == 0);
	}

	/* 2. Block SIGTERM now, then wait for it: the program gets it. */
	watchdog_phase("signal_test 2: sigwait after vm_create");
	{
		int sig = 0;

		sigemptyset(&term);
		sigaddset(&term, SIGTERM);
		CHECK(pthread_sigmask(SIG_BLOCK, &term, NULL) == 0);
		CHECK(kill(getpid(), SIGTERM) == 0);
		CHECK(sigwait(&term, &sig) == 0);
		CHECK(sig == SIGTERM);
		CHECK(pthread_sigmask(SIG_UNBLOCK, &term, NULL) == 0);
	}

	/*
	 * 3. A signal to a vCPU thread asleep in HLT: handled, vm_run goes on.
	 * 4. The same with a handler installed without SA_RESTART, which
	 *    interrupts the futex wait inside: vm_run retries it and gives
	 *    the caller's errno back (it read EINTR).
	 * Not under ThreadSanitizer, which holds an asynchronous signal back
	 * while the thread waits in a call it does not intercept (the raw
	 * futex system call): the handler would run only after vm_run.
	 */
#if defined(__SANITIZE_THREAD__)
	if (0)
#endif
	{
		watchdog_phase("signal_test 3: a signal to a thread in vm_run");
		signals_to_a_sleeping_vcpu(ctx, 0, SA_RESTART);
		watchdog_phase("signal_test 4: the same without SA_RESTART");
		signals_to_a_sleeping_vcpu(ctx, 1, 0);
	}
	watchdog_phase("signal_test 5: a timer ends a HLT");
	timer_ends_a_sleep(ctx, 2);
	vm_destroy(ctx);
	return test_finish("signal_test");
}
