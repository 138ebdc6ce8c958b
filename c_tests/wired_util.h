/*
 * For the wired-memory tests: giving up the privilege that lets root lock
 * memory beyond RLIMIT_MEMLOCK.
 */
#ifndef VMM_RS_WIRED_UTIL_H
#define VMM_RS_WIRED_UTIL_H

#include <linux/capability.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "test_util.h"

/*
 * Whether this thread has CAP_IPC_LOCK in effect, which lets it lock
 * memory past RLIMIT_MEMLOCK (root usually has it; a container's root
 * may not).
 */
static inline int
has_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) != 0)
		return 0;
	return (d[CAP_IPC_LOCK / 32].effective >> (CAP_IPC_LOCK % 32)) & 1;
}

/*
 * Raises RLIMIT_MEMLOCK's soft limit to its hard limit. Whether `need`
 * bytes can be wired (the hard limit allows it, or CAP_IPC_LOCK): if
 * not, prints "<what> skipped: ..." and returns 0.
 */
static inline int
memlock_room(const char *what, unsigned long long need)
{
	struct rlimit rl;

	CHECK_OK(getrlimit(RLIMIT_MEMLOCK, &rl));
	rl.rlim_cur = rl.rlim_max;
	CHECK_OK(setrlimit(RLIMIT_MEMLOCK, &rl));
	if (rl.rlim_max < need && !has_ipc_lock()) {
		printf("%s skipped: RLIMIT_MEMLOCK hard limit %llu < %llu MiB\n", what,
		    (unsigned long long)rl.rlim_max, need >> 20);
		return 0;
	}
	return 1;
}

/* Leaves this (single) thread without CAP_IPC_LOCK, so RLIMIT_MEMLOCK applies. */
static inline int
drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) != 0)
		return -1;
	d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	return (int)syscall(SYS_capset, &h, d);
}

#endif
