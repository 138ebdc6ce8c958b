/*
 * Stand-in for FreeBSD 14's <sys/cpuset.h> (with <sys/_cpuset.h>), for
 * the header_*_freebsd_* units: the same names and layout for a userland
 * program (CPU_MAXSIZE 1024; CPU_SETSIZE defaults to it; `struct _cpuset`
 * of `long` words, typedef'd cpuset_t), and two of the CPU_* macros.
 * Not FreeBSD's text. Like FreeBSD's (cpuset(2) includes <sys/param.h>
 * first), it wants <sys/param.h> before it: here glibc's, for NBBY and
 * howmany.
 */
#ifndef VMM_RS_STUB_SYS_CPUSET_H
#define VMM_RS_STUB_SYS_CPUSET_H
#define CPU_MAXSIZE 1024
#ifndef CPU_SETSIZE
#define CPU_SETSIZE CPU_MAXSIZE
#endif
#define _NCPUBITS (sizeof(long) * NBBY)
typedef struct _cpuset {
	long __bits[howmany(CPU_SETSIZE, _NCPUBITS)];
} cpuset_t;
#define CPU_SET(n, p) ((p)->__bits[(n) / _NCPUBITS] |= 1L << ((n) % _NCPUBITS))
#define CPU_ISSET(n, p) (((p)->__bits[(n) / _NCPUBITS] & (1L << ((n) % _NCPUBITS))) != 0)
#endif
