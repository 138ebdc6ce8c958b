/*
 * cflags: -DVMM_RS_SYSTEM_CPUSET -Ic_tests/freebsd_stub
 * Header coexistence on FreeBSD: "vmm_rs.h" then <sys/cpuset.h>: the
 * header takes the system's cpuset_t, so the second include adds nothing
 * that clashes. Built against a stand-in for the FreeBSD header
 * (c_tests/freebsd_stub), through VMM_RS_SYSTEM_CPUSET: the path the
 * header takes on FreeBSD (__FreeBSD__ itself would turn the host's
 * own system headers to FreeBSD's).
 */
#include "vmm_rs.h"
#include <sys/cpuset.h>

#include <string.h>

int
main(void)
{
	cpuset_t set;

	memset(&set, 0, sizeof(set));
	CPU_SET(3, &set);
	return CPU_ISSET(3, &set) && sizeof(set) * 8 == CPU_MAXSIZE ? 0 : 1;
}
