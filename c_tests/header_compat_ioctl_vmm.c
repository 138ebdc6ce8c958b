/*
 * Header coexistence: <sys/ioctl.h> then "vmm_rs.h" in one translation
 * unit. Must build with -Wall -Wextra -Werror (C11 -pedantic; also valid
 * C++) without redefinition warnings or name clashes.
 */
#include <sys/ioctl.h>
#include "vmm_rs.h"

#include <string.h>

int
main(void)
{
	struct vm_exit vme;

	memset(&vme, 0, sizeof(vme));
	vme.exitcode = VM_EXITCODE_INOUT;
	return vme.exitcode == 0 && FIONREAD != 0 && VM_SUSPEND != 0 ? 0 : 1;
}
