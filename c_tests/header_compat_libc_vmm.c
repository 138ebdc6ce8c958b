/*
 * The header redeclares nothing of the C library: after the usual libc
 * and POSIX headers, -Wredundant-decls (an error here) finds none of
 * their functions declared again.
 * cflags: -Wredundant-decls
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "vmm_rs.h"

int
header_compat_libc_vmm(void)
{
	return VM_MAX_NAMELEN;
}
