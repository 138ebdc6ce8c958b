/*
 * Minimal harness for the C tests: CHECK macros that report file:line and
 * count failures, and a watchdog that fails the test loudly instead of
 * letting a deadlock hang `make check`.
 */
#ifndef VMM_RS_TEST_UTIL_H
#define VMM_RS_TEST_UTIL_H

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Atomic: tests check from several threads. */
static atomic_int t_failures;
static atomic_int t_checks;

#define CHECK(cond)                                                        \
	do {                                                                   \
		t_checks++;                                                        \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
			    __LINE__, #cond);                                          \
			t_failures++;                                                  \
		}                                                                  \
	} while (0)

/* Checks that `call` returns -1 with errno `err`. */
#define CHECK_ERR(call, err)                                               \
	do {                                                                   \
		errno = 0;                                                         \
		int t_rc_ = (int)(call);                                           \
		int t_errno_ = errno;                                              \
		t_checks++;                                                        \
		if (t_rc_ != -1 || t_errno_ != (err)) {                            \
			fprintf(stderr, "%s:%d: %s: expected -1/%s, got %d/%s\n",      \
			    __FILE__, __LINE__, #call, #err, t_rc_,                    \
			    strerror(t_errno_));                                       \
			t_failures++;                                                  \
		}                                                                  \
	} while (0)

/* Checks that `call` returns 0. */
#define CHECK_OK(call)                                                     \
	do {                                                                   \
		errno = 0;                                                         \
		int t_rc_ = (int)(call);                                           \
		t_checks++;                                                        \
		if (t_rc_ != 0) {                                                  \
			fprintf(stderr, "%s:%d: %s: expected 0, got %d (%s)\n",        \
			    __FILE__, __LINE__, #call, t_rc_, strerror(errno));        \
			t_failures++;                                                  \
		}                                                                  \
	} while (0)

static const char *volatile t_watchdog_what = "test";
/* The watchdog's exit code; 3 means "the deadlock under test was seen". */
static volatile sig_atomic_t t_watchdog_code = 3;
/* Where the watchdog's message goes (a test that captures stderr moves it). */
static volatile sig_atomic_t t_watchdog_fd = 2;

static void
t_watchdog_fire(int sig)
{
	(void)sig;
	static const char msg[] = "WATCHDOG: test did not finish in time "
	                          "(deadlock or hang): ";
	(void)!write(t_watchdog_fd, msg, sizeof(msg) - 1);
	(void)!write(t_watchdog_fd, t_watchdog_what, strlen(t_watchdog_what));
	(void)!write(t_watchdog_fd, "\n", 1);
	_exit(t_watchdog_code);
}

/*
 * Fails the whole test with exit code 3 if it runs longer than `secs`
 * (five times longer under valgrind, which serialises threads).
 */
static inline void
watchdog_start(unsigned secs, const char *what)
{
	t_watchdog_what = what;
	signal(SIGALRM, t_watchdog_fire);
	alarm(getenv("VMM_RS_UNDER_VALGRIND") ? secs * 5 : secs);
}

/* Names the step under way, for the watchdog's message. */
static inline void
watchdog_phase(const char *what)
{
	t_watchdog_what = what;
}

/* Prints the summary and returns the process exit code. */
static inline int
test_finish(const char *name)
{
	if (t_checks == 0) {
		fprintf(stderr, "%s: no checks ran\n", name);
		return 1;
	}
	printf("%s: %d checks, %d failed\n", name, atomic_load(&t_checks), atomic_load(&t_failures));
	return t_failures == 0 ? 0 : 1;
}

#ifdef VMM_RS_H
/* The index of the statistic described `desc`, or -1. */
static inline int
stat_index(struct vmctx *ctx, const char *desc)
{
	const char *d;
	for (int i = 0; (d = vm_get_stat_desc(ctx, i)) != NULL; i++)
		if (strcmp(d, desc) == 0)
			return i;
	return -1;
}

/*
 * Creates VM `name`, opens it and its vCPU `id` (not activated). Returns
 * the handle, or NULL (a failed check).
 */
static inline struct vmctx *
open_vm_with_vcpu(const char *name, int id, struct vcpu **v)
{
	CHECK_OK(vm_create(name));
	struct vmctx *ctx = vm_open(name);
	CHECK(ctx != NULL);
	*v = ctx != NULL ? vm_vcpu_open(ctx, id) : NULL;
	CHECK(*v != NULL);
	return *v != NULL ? ctx : NULL;
}

/*
 * The usual preamble: creates VM `name`, opens it and its vCPUs 0 and 1,
 * and activates both. Returns the handle, or NULL (a failed check).
 */
static inline struct vmctx *
open_vm_with_two_vcpus(const char *name, struct vcpu **v0, struct vcpu **v1)
{
	struct vmctx *ctx = open_vm_with_vcpu(name, 0, v0);
	if (ctx == NULL)
		return NULL;
	*v1 = vm_vcpu_open(ctx, 1);
	CHECK_OK(vm_activate_cpu(*v0));
	CHECK_OK(vm_activate_cpu(*v1));
	return ctx;
}
#endif

#endif
