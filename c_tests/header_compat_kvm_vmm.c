/*
 * Header coexistence: <linux/kvm.h> then "vmm_rs.h" in one translation
 * unit. Must build with -Wall -Wextra -Werror (C11 -pedantic; also valid
 * C++) without redefinition warnings or name clashes.
 */
#include <linux/kvm.h>
#include "vmm_rs.h"

#include <string.h>

int
main(void)
{
	cpuset_t set;
	struct kvm_run *krun = NULL;

	memset(&set, 0, sizeof(set));
	return set.__bits[0] == 0 && krun == NULL &&
	    KVM_GET_API_VERSION != VM_GET_REGISTER ? 0 : 1;
}
