/*
 * cflags: -DVMM_RS_SYSTEM_CPUSET -Ic_tests/freebsd_stub
 * refused-by: vmm_rs: cpuset_t must be 128 bytes
 * Must NOT compile: on FreeBSD a program that shrinks cpuset_t
 * (CPU_SETSIZE 256, FreeBSD 13's size) would let vm_active_cpus() and
 * friends write 128 bytes into a smaller set. The header refuses it
 * (with the stand-in FreeBSD header, through VMM_RS_SYSTEM_CPUSET, as
 * the header_compat_freebsd_* units).
 */
#define CPU_SETSIZE 256
#include "vmm_rs.h"

int
main(void)
{
	return 0;
}
