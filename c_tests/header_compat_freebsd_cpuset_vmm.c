/*
 * cflags: -DVMM_RS_SYSTEM_CPUSET -Ic_tests/freebsd_stub
 * Header coexistence on FreeBSD: <sys/cpuset.h> then "vmm_rs.h" (the
 * order of bhyve's sources, whose vmmapi.h includes it): one cpuset_t,
 * the system's, with its CPU_* macros. Built against a stand-in for the
 * FreeBSD header (c_tests/freebsd_stub), through VMM_RS_SYSTEM_CPUSET:
 * the path the header takes on FreeBSD (__FreeBSD__ itself would turn
 * the host's own system headers to FreeBSD's).
 */
#include <sys/param.h>
#include <sys/cpuset.h>
#include "vmm_rs.h"

#include <string.h>

int
main(void)
{
	cpuset_t set;
	struct vm_cpuset arg;

	memset(&set, 0, sizeof(set));
	CPU_SET(70, &set);
	arg.which = VM_ACTIVE_CPUS;
	arg.cpusetsize = sizeof(set);
	arg.cpus = &set;
	return CPU_ISSET(70, arg.cpus) && CPU_MAXSIZE == 1024 ? 0 : 1;
}
