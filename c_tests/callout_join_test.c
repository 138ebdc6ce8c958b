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
 *  3. a thread with a cancellation pending calls vm_destroy: the join is
 *     not acted on as a cancellation point (that aborted the process);
 *     the thread is cancelled at its next one;
 *  4. vm_destroy from a pthread key destructor that runs after the Rust
 *     standard library's own thread clean-up (the join's self-check used
 *     std's thread identity there, which panics: EIO, and a leaked handle).
 *  5. a fork()ed child's vm_destroy (unsupported use, README "fork()")
 *     does not join the timer thread, which is not in the child (that
 *     panicked in the Rust standard library: EIO); natively only.
 * Under an emulator (VMM_RS_RUN_WITH, qemu-user), which wakes a joiner
 * before the joined thread's host side exits, the thread is only checked
 * to go away.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apic_util.h"

#define HPET_GPA 0xFED00000UL
#define HPET_CONFIG 0x10
#define HPET_TCNF(n) (0x100 + 0x20 * (n))
#define HPET_TCMP(n) (0x108 + 0x20 * (n))
#define TCNF_INT_ENB 0x4
#define TCNF_PERIODIC 0x8
#define TCNF_VAL_SET 0x40

/*
 * The state letters and flags of this process's threads named as the
 * library names a VM's timer thread (the kernel keeps 15 characters of a
 * thread's name), up to `max`; returns how many there are.
 */
static int
callout_stats(char *state, unsigned long *flags, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	CHECK(d != NULL);
	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char path[300], stat[1024] = "";
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
		if (n < max)
			CHECK(p != NULL && sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", &state[n], &flags[n]) == 2);
		n++;
	}
	closedir(d);
	return n;
}

/*
 * Timer threads that are not exiting. A joined thread may stay listed a
 * moment, in the kernel's exit path (PF_EXITING, 0x4, in its flags): a
 * join returns when the thread's user side is done, before the kernel
 * removes it.
 */
static int
callout_threads(void)
{
	char state[16];
	unsigned long flags[16];
	int n = callout_stats(state, flags, 16), live = 0;

	CHECK(n <= 16);
	for (int i = 0; i < n && i < 16; i++)
		live += !(flags[i] & 0x4);
	return n < 0 ? -1 : live;
}

/* The state letter of the one timer thread ('S': asleep). */
static char
callout_thread_state(void)
{
	char state = 0;
	unsigned long flags;

	return callout_stats(&state, &flags, 1) == 1 ? state : 0;
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

static pthread_barrier_t cancel_barrier;
static int returned_from_destroy;

static void *
destroy_with_cancel_pending(void *ctx)
{
	int old;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	pthread_barrier_wait(&cancel_barrier); /* main cancels this thread */
	pthread_barrier_wait(&cancel_barrier);
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old); /* pending, deferred */
	vm_destroy(ctx);
	returned_from_destroy = 1;
	pthread_testcancel();
	return NULL;
}

static pthread_key_t destroy_key;
static struct vmctx *first_ctx, *dtor_ctx;
static int dtor_errno = -1, dtor_ran;

static void
destroy_in_key_destructor(void *arg)
{
	(void)arg;
	errno = 0;
	vm_destroy(dtor_ctx);
	dtor_errno = errno;
	dtor_ran = check_no_callout_thread(-4);
}

static void *
destroy_then_exit(void *arg)
{
	(void)arg;
	vm_destroy(first_ctx); /* this thread's std thread data is set up */
	pthread_setspecific(destroy_key, (void *)1);
	return NULL;
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

		cb_ctx = open_vm_with_two_vcpus("callout-join-cb", &v0, &v1);
		if (cb_ctx == NULL)
			return test_finish("callout_join_test");
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

	/* 3. A pending cancellation is not acted on inside vm_destroy. */
	watchdog_phase("callout_join_test 3: destroy with a cancellation pending");
	for (int i = 0; i < 20; i++) {
		struct vmctx *ctx;
		pthread_t t;
		void *ret;

		CHECK_OK(vm_create("callout-join-cancel"));
		ctx = vm_open("callout-join-cancel");
		CHECK(ctx != NULL);
		returned_from_destroy = 0;
		CHECK(pthread_barrier_init(&cancel_barrier, NULL, 2) == 0);
		CHECK(pthread_create(&t, NULL, destroy_with_cancel_pending, ctx) == 0);
		pthread_barrier_wait(&cancel_barrier);
		CHECK(pthread_cancel(t) == 0);
		pthread_barrier_wait(&cancel_barrier);
		CHECK(pthread_join(t, &ret) == 0);
		CHECK(ret == PTHREAD_CANCELED);
		CHECK(returned_from_destroy);
		pthread_barrier_destroy(&cancel_barrier);
		CHECK(check_no_callout_thread(i));
	}

	/*
	 * 4. From a key destructor run after std's thread clean-up: a thread
	 * that used the library (and so std's thread identity, as before)
	 * exits. std's clean-up key was made by the first destroy above; a
	 * dummy key takes the lowest free index (std freed it again), so ours
	 * comes after std's and its destructor runs after std's.
	 */
	watchdog_phase("callout_join_test 4: destroy from a key destructor");
	{
		pthread_key_t dummy;
		pthread_t t;

		CHECK(pthread_key_create(&dummy, NULL) == 0);
		CHECK(pthread_key_create(&destroy_key, destroy_in_key_destructor) == 0);
		CHECK_OK(vm_create("callout-join-k1"));
		CHECK_OK(vm_create("callout-join-k2"));
		first_ctx = vm_open("callout-join-k1");
		dtor_ctx = vm_open("callout-join-k2");
		CHECK(first_ctx != NULL && dtor_ctx != NULL);
		CHECK(pthread_create(&t, NULL, destroy_then_exit, NULL) == 0);
		CHECK(pthread_join(t, NULL) == 0);
		CHECK(dtor_ran);
		CHECK(dtor_errno == 0);
		/* The name is free: the VM was destroyed and its handle closed. */
		CHECK_OK(vm_create("callout-join-k2"));
		vm_destroy(vm_open("callout-join-k2"));
	}

	/*
	 * 5. A fork()ed child's vm_destroy leaves the parent's thread be.
	 * Natively only: under valgrind or an emulator a thread waiting for
	 * the tool's own scheduler also reads as sleeping, mutex held or not.
	 */
	watchdog_phase("callout_join_test 5: destroy in a fork()ed child");
	if (getenv("VMM_RS_UNDER_VALGRIND") == NULL && getenv("VMM_RS_RUN_WITH") == NULL) {
		struct vmctx *ctx;
		pid_t pid;
		int status = -1, child_errno = -1, fds[2];

		CHECK_OK(vm_create("callout-join-fork"));
		ctx = vm_open("callout-join-fork");
		CHECK(ctx != NULL);
		CHECK(pipe(fds) == 0);
		/*
		 * Fork only once the timer thread sleeps (the VM has no timer
		 * armed: in its condition wait, its mutex free). A lock held
		 * at the fork stays held in the child for good, which is why
		 * a child must not use the parent's VMs (README).
		 */
		while (callout_thread_state() != 'S')
			sched_yield();
		pid = fork();
		if (pid == 0) {
			int e;

			alarm(10); /* a hang fails the check below, not the run */
			errno = 0;
			vm_destroy(ctx);
			e = errno;
			/* (Its exit status is valgrind's under valgrind: the
			 * parent's other threads' memory is lost in a child.) */
			_exit(write(fds[1], &e, sizeof(e)) == sizeof(e) ? 0 : 1);
		}
		CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
		CHECK(WIFEXITED(status));
		if (WIFSIGNALED(status))
			printf("fork()ed child: signal %d\n", WTERMSIG(status));
		CHECK(read(fds[0], &child_errno, sizeof(child_errno)) == sizeof(child_errno));
		CHECK(child_errno == 0);
		close(fds[0]);
		close(fds[1]);
		vm_destroy(ctx);
		CHECK(check_no_callout_thread(-5));
	}
	return test_finish("callout_join_test");
}
