/*
 * Argument limits the rest of the suite left unchecked (a mutation run
 * found them untested):
 *  - vmm_ioctl: an unknown command is ENOTTY even with a NULL argument
 *    (the command is decoded before the argument is looked at);
 *  - VM_GET_CPUS: a cpusetsize too small for the set's highest member is
 *    ERANGE (FreeBSD: size < howmany(CPU_FLS(set), NBBY)), one just big
 *    enough is fine;
 *  - vm_get/set_register_set: a count of exactly VM_REG_LAST is allowed
 *    (only a count above it is EINVAL).
 */
#include "vmm_rs.h"
#include "test_util.h"

int
main(void)
{
	watchdog_start(30, "arg_limits_test");
	CHECK_OK(vmm_rs_set_maxcpus(16));
	CHECK_OK(vm_create("arglimits"));
	struct vmctx *ctx = vm_open("arglimits");
	CHECK(ctx != NULL);

	/* 1. ENOTTY before EFAULT. */
	CHECK_ERR(vmm_ioctl(ctx, 0xc02076c8 /* _IOWR('v', 200, 32) */, NULL), ENOTTY);
	CHECK_ERR(vmm_ioctl(ctx, VM_GET_GPA_PMAP, NULL), ENOTTY);

	/* 2. VM_GET_CPUS size against the highest member. */
	struct vcpu *v8 = vm_vcpu_open(ctx, 8);
	CHECK(v8 != NULL);
	CHECK_OK(vm_activate_cpu(v8));
	unsigned char buf[128];
	memset(buf, 0xee, sizeof(buf));
	struct vm_cpuset cs = { .which = VM_ACTIVE_CPUS, .cpusetsize = 1, .cpus = (cpuset_t *)buf };
	CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), ERANGE);
	cs.cpusetsize = 2;
	CHECK_OK(vmm_ioctl(ctx, VM_GET_CPUS, &cs));
	CHECK(buf[0] == 0x00 && buf[1] == 0x01 && buf[2] == 0xee);

	/* 3. count == VM_REG_LAST is a valid register-set size. */
	struct vcpu *v0 = vm_vcpu_open(ctx, 0);
	CHECK(v0 != NULL);
	int regnums[VM_REG_LAST + 1];
	uint64_t regvals[VM_REG_LAST + 1];
	for (int i = 0; i <= VM_REG_LAST; i++) {
		regnums[i] = VM_REG_GUEST_RBX;
		regvals[i] = 0x1234 + i;
	}
	CHECK_OK(vm_set_register_set(v0, VM_REG_LAST, regnums, regvals));
	memset(regvals, 0, sizeof(regvals));
	CHECK_OK(vm_get_register_set(v0, VM_REG_LAST, regnums, regvals));
	CHECK(regvals[0] == 0x1234 + VM_REG_LAST - 1);
	CHECK_ERR(vm_get_register_set(v0, VM_REG_LAST + 1, regnums, regvals), EINVAL);

	vm_vcpu_close(v0);
	vm_vcpu_close(v8);
	vm_destroy(ctx);
	return test_finish("arg_limits_test");
}
