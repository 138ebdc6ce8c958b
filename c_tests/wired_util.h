/*
 * For the wired-memory tests: giving up the privilege that lets root lock
 * memory beyond RLIMIT_MEMLOCK.
 */
#ifndef VMM_RS_WIRED_UTIL_H
#define VMM_RS_WIRED_UTIL_H

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

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
