/*
 * Header include guard: "vmm_rs.h" included twice in one translation unit
 * (as a program and a helper header of its both do) builds with -Wall
 * -Wextra -Werror -pedantic, its hand-written trailer (the vmm.h inline
 * functions) included.
 */
#include "vmm_rs.h"
#include "vmm_rs.h"

int
main(void)
{
	return VM_INTINFO_VECTOR(0x80000306) == 6 ? 0 : 1;
}
