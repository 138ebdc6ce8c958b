/*
 * Header coexistence: "vmm_rs.h" then <sys/ioctl.h> in one translation
 * unit. Must build with -Wall -Wextra -Werror (C11 -pedantic; also valid
 * C++) without redefinition warnings or name clashes.
 */
#include "vmm_rs.h"
#include <sys/ioctl.h>

#include <string.h>

int
main(void)
{
	struct vm_run run;

	memset(&run, 0, sizeof(run));
	return VM_RUN == 0xc0207601UL && TIOCGWINSZ != 0 && run.cpuid == 0 ?
	    0 : 1;
}
