/*
 * Per-vCPU ioctls: registers, register sets, segment descriptors,
 * capabilities, intinfo, exceptions, activation, cpusets, suspend-cpu, and
 * the error paths of each, through libvmmapi and through vmm_ioctl.
 */
#include "vmm_rs.h"
#include "test_util.h"

static int
cpuset_isset(const cpuset_t *set, int cpu)
{
	const unsigned char *b = (const unsigned char *)set;
	return (b[cpu / 8] >> (cpu % 8)) & 1;
}

static int
cpuset_count(const cpuset_t *set)
{
	const unsigned char *b = (const unsigned char *)set;
	int n = 0;
	for (size_t i = 0; i < sizeof(*set); i++)
		n += __builtin_popcount(b[i]);
	return n;
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v0, *v1;
	uint64_t val, base;
	uint32_t limit, access;
	int cap;

	watchdog_start(30, "vcpu_test");
	CHECK_OK(vm_create("vcpu"));
	ctx = vm_open("vcpu");
	v0 = vm_vcpu_open(ctx, 0);
	v1 = vm_vcpu_open(ctx, 1);
	CHECK(ctx && v0 && v1);

	/*
	 * Every register round-trips; unknown ones are EINVAL, and so are
	 * GDTR and IDTR, which have descriptors only (as FreeBSD).
	 */
	for (int r = 0; r < VM_REG_LAST; r++) {
		if (r == VM_REG_GUEST_GDTR || r == VM_REG_GUEST_IDTR) {
			CHECK_ERR(vm_set_register(v0, r, 1), EINVAL);
			CHECK_ERR(vm_get_register(v0, r, &val), EINVAL);
			continue;
		}
		/*
		 * TPR reads the local APIC's task priority as CR8 and cannot
		 * be set (FreeBSD vmx_getreg/vmx_setreg).
		 */
		if (r == VM_REG_GUEST_TPR) {
			CHECK_ERR(vm_set_register(v0, r, 0x1000 + r), EINVAL);
			continue;
		}
		/* The interrupt shadow is the guest's: only 0 (see intr_shadow_test). */
		if (r == VM_REG_GUEST_INTR_SHADOW) {
			CHECK_ERR(vm_set_register(v0, r, 0x1000 + r), EINVAL);
			CHECK_OK(vm_set_register(v0, r, 0));
			continue;
		}
		CHECK_OK(vm_set_register(v0, r, 0x1000 + r));
	}
	for (int r = 0; r < VM_REG_LAST; r++) {
		if (r == VM_REG_GUEST_GDTR || r == VM_REG_GUEST_IDTR)
			continue;
		val = 1;
		CHECK_OK(vm_get_register(v0, r, &val));
		CHECK(val == (r == VM_REG_GUEST_INTR_SHADOW || r == VM_REG_GUEST_TPR ? 0 : 0x1000u + r));
	}
	/* VMX's VM-entry instruction length is a 32-bit VMCS field. */
	CHECK_OK(vm_set_register(v0, VM_REG_GUEST_ENTRY_INST_LENGTH, 0x700000001ull));
	CHECK_OK(vm_get_register(v0, VM_REG_GUEST_ENTRY_INST_LENGTH, &val));
	CHECK(val == 1);
	CHECK_ERR(vm_set_register(v0, VM_REG_LAST, 1), EINVAL);
	CHECK_ERR(vm_get_register(v0, -1, &val), EINVAL);
	CHECK_ERR(vm_get_register(v0, VM_REG_GUEST_RIP, NULL), EFAULT);
	/* vCPU 1's registers are its own. */
	CHECK_OK(vm_get_register(v1, VM_REG_GUEST_RAX, &val));
	CHECK(val == 0);

	/* The same through the ioctl face. */
	{
		struct vm_register reg = { .cpuid = 1, .regnum = VM_REG_GUEST_RIP, .regval = 0xfff0 };
		CHECK_OK(vmm_ioctl(ctx, VM_SET_REGISTER, &reg));
		reg.regval = 0;
		CHECK_OK(vmm_ioctl(ctx, VM_GET_REGISTER, &reg));
		CHECK(reg.regval == 0xfff0);
		reg.cpuid = 16;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_REGISTER, &reg), EINVAL);
		reg.cpuid = -1;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_REGISTER, &reg), EINVAL);
		reg.cpuid = 0;
		reg.regnum = 1000;
		CHECK_ERR(vmm_ioctl(ctx, VM_SET_REGISTER, &reg), EINVAL);
	}

	/* Register sets. */
	{
		int regs[3] = { VM_REG_GUEST_RAX, VM_REG_GUEST_RBX, VM_REG_GUEST_RFLAGS };
		uint64_t vals[3] = { 1, 2, 0x202 }, back[3] = { 0 };
		CHECK_OK(vm_set_register_set(v1, 3, regs, vals));
		CHECK_OK(vm_get_register_set(v1, 3, regs, back));
		CHECK(back[0] == 1 && back[1] == 2 && back[2] == 0x202);
		regs[1] = VM_REG_LAST;
		CHECK_ERR(vm_get_register_set(v1, 3, regs, back), EINVAL);
		CHECK_ERR(vm_get_register_set(v1, 3, NULL, back), EFAULT);
		CHECK_OK(vm_get_register_set(v1, 0, NULL, NULL));
	}

	/* Segment descriptors: only segment and descriptor-table registers. */
	CHECK_OK(vm_set_desc(v0, VM_REG_GUEST_CS, 0xffff0000, 0xffff, 0x9b));
	CHECK_OK(vm_get_desc(v0, VM_REG_GUEST_CS, &base, &limit, &access));
	CHECK(base == 0xffff0000 && limit == 0xffff && access == 0x9b);
	CHECK_OK(vm_set_desc(v0, VM_REG_GUEST_GDTR, 0x1000, 0x27, 0));
	{
		struct seg_desc sd;
		CHECK_OK(vm_get_seg_desc(v0, VM_REG_GUEST_GDTR, &sd));
		CHECK(sd.base == 0x1000 && sd.limit == 0x27 && sd.access == 0);
		struct vm_seg_desc a = { .cpuid = 0, .regnum = VM_REG_GUEST_CS };
		CHECK_OK(vmm_ioctl(ctx, VM_GET_SEGMENT_DESCRIPTOR, &a));
		CHECK(a.desc.base == 0xffff0000 && a.desc.access == 0x9b);
	}
	CHECK_ERR(vm_set_desc(v0, VM_REG_GUEST_RAX, 0, 0, 0), EINVAL);
	CHECK_ERR(vm_get_desc(v0, VM_REG_GUEST_EFER, &base, &limit, &access), EINVAL);

	/* Capabilities: HLT exits by default (as FreeBSD's SVM), PAUSE does not. */
	CHECK_OK(vm_get_capability(v1, VM_CAP_HALT_EXIT, &cap));
	CHECK(cap == 1);
	CHECK_OK(vm_get_capability(v1, VM_CAP_PAUSE_EXIT, &cap));
	CHECK(cap == 0);
	CHECK_OK(vm_set_capability(v0, VM_CAP_HALT_EXIT, 0));
	CHECK_OK(vm_get_capability(v0, VM_CAP_HALT_EXIT, &cap));
	CHECK(cap == 0);
	CHECK_OK(vm_get_capability(v1, VM_CAP_HALT_EXIT, &cap));
	CHECK(cap == 1);
	CHECK_OK(vm_set_capability(v0, VM_CAP_HALT_EXIT, 7));
	CHECK_OK(vm_get_capability(v0, VM_CAP_HALT_EXIT, &cap));
	CHECK(cap == 1);
	CHECK_ERR(vm_set_capability(v0, VM_CAP_MAX, 1), EINVAL);
	CHECK_ERR(vm_get_capability(v0, -1, &cap), EINVAL);

	/* Intinfo: valid words round-trip, malformed ones are EINVAL. */
	{
		uint64_t i1, i2;
		uint64_t pf = (1u << 31) | (3u << 8) | 14; /* valid hw exception #PF */
		CHECK_OK(vm_set_intinfo(v0, pf));
		CHECK_OK(vm_get_intinfo(v0, &i1, &i2));
		CHECK(i1 == pf && i2 == 0);
		CHECK_ERR(vm_set_intinfo(v0, (1u << 31) | (2u << 8) | 3), EINVAL);
		CHECK_ERR(vm_set_intinfo(v0, (1u << 31) | (3u << 8) | 40), EINVAL);
		CHECK_ERR(vm_get_intinfo(v0, NULL, &i2), EFAULT);
		/* In protected mode an exception carries its error code only
		 * when error_code_valid says so: bit 11 and bits 63:32 of the
		 * pending intinfo. */
		CHECK_OK(vm_set_register(v0, VM_REG_GUEST_CR0, 0x11));
		CHECK_OK(vm_set_register(v1, VM_REG_GUEST_CR0, 0x11));
		CHECK_OK(vm_inject_exception(v0, 13, 1, 0x18, 0));
		CHECK_ERR(vm_inject_exception(v0, 6, 0, 0, 0), EBUSY);
		CHECK_ERR(vm_inject_exception(v1, 32, 0, 0, 0), EINVAL);
		CHECK_OK(vm_get_intinfo(v0, &i1, &i2));
		CHECK(i2 == ((0x18ull << 32) | (1u << 31) | (1u << 11) | (3u << 8) | 13));
		CHECK_OK(vm_inject_exception(v1, 6, 0, 0x18, 0));
		CHECK_OK(vm_get_intinfo(v1, &i1, &i2));
		CHECK(i2 == ((1u << 31) | (3u << 8) | 6));
		CHECK_OK(vm_restart_instruction(v0));
	}

	/* Activation and cpusets. */
	{
		cpuset_t set;
		CHECK_OK(vm_activate_cpu(v0));
		CHECK_ERR(vm_activate_cpu(v0), EBUSY);
		CHECK_OK(vm_activate_cpu(v1));
		CHECK_OK(vm_active_cpus(ctx, &set));
		CHECK(cpuset_isset(&set, 0) && cpuset_isset(&set, 1) && cpuset_count(&set) == 2);
		CHECK_OK(vm_suspended_cpus(ctx, &set));
		CHECK(cpuset_count(&set) == 0);

		struct vm_cpuset cs = { .which = 7, .cpusetsize = sizeof(set), .cpus = &set };
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), EINVAL);
		cs.which = VM_ACTIVE_CPUS;
		cs.cpusetsize = 0;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), ERANGE);
		cs.cpusetsize = 1; /* enough for vCPUs 0 and 1 */
		memset(&set, 0xff, sizeof(set));
		CHECK_OK(vmm_ioctl(ctx, VM_GET_CPUS, &cs));
		CHECK(((unsigned char *)&set)[0] == 3 && ((unsigned char *)&set)[1] == 0xff);
		cs.cpusetsize = sizeof(set);
		cs.cpus = NULL;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), EFAULT);
		CHECK_ERR(vm_active_cpus(ctx, NULL), EFAULT);

		/* Debug set: one vCPU, all vCPUs, and their errors. */
		CHECK_OK(vm_suspend_cpu(v1));
		CHECK_OK(vm_debug_cpus(ctx, &set));
		CHECK(cpuset_isset(&set, 1) && cpuset_count(&set) == 1);
		CHECK_ERR(vm_resume_cpu(v0), EINVAL);
		CHECK_OK(vm_resume_cpu(v1));
		CHECK_OK(vm_suspend_all_cpus(ctx));
		CHECK_OK(vm_debug_cpus(ctx, &set));
		CHECK(cpuset_count(&set) == 2);
		CHECK_OK(vm_resume_all_cpus(ctx));
		CHECK_OK(vm_debug_cpus(ctx, &set));
		CHECK(cpuset_count(&set) == 0);
		struct vm_activate_cpu ac = { .vcpuid = 5 }; /* not active */
		CHECK_ERR(vmm_ioctl(ctx, VM_SUSPEND_CPU, &ac), EINVAL);
		ac.vcpuid = 99;
		CHECK_ERR(vmm_ioctl(ctx, VM_SUSPEND_CPU, &ac), EINVAL);
	}

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
	return test_finish("vcpu_test");
}
