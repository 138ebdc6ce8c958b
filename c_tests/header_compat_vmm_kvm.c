/*
 * Header coexistence: "vmm_rs.h" then <linux/kvm.h> in one translation
 * unit. Must build with -Wall -Wextra -Werror (C11 -pedantic; also valid
 * C++) without redefinition warnings or name clashes.
 */
#include "vmm_rs.h"
#include <linux/kvm.h>

#include <string.h>

int
main(void)
{
	struct vm_register reg;
	struct kvm_regs kregs;

	memset(&reg, 0, sizeof(reg));
	memset(&kregs, 0, sizeof(kregs));
	reg.regnum = VM_REG_GUEST_RIP;
#if defined(__x86_64__)
	/* x86's register names beside ours. */
	if (kregs.rip != 0)
		return 1;
#endif
	return reg.regnum == 20 && KVM_RUN != VM_RUN ? 0 : 1;
}
