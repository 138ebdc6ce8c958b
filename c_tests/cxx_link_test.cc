/*
 * C++: a program compiled as C++11 includes vmm_rs.h and links against
 * the library, calling functions of the generated part of the header, of
 * its hand-written part (the trailer's vm_readwrite_kernemu_device) and
 * its static inline wrappers (vm_inject_gp): all must have C linkage.
 */
#include "vmm_rs.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

static int failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			std::fprintf(stderr, "%s:%d: CHECK failed: %s (errno %d)\n", \
			    __FILE__, __LINE__, #cond, errno);               \
			failures++;                                          \
		}                                                            \
	} while (0)

int
main()
{
	CHECK(vm_create("cxx") == 0);
	struct vmctx *ctx = vm_open("cxx");
	CHECK(ctx != nullptr);
	struct vcpu *v = vm_vcpu_open(ctx, 0);
	CHECK(v != nullptr);
	if (ctx == nullptr || v == nullptr)
		return 1;

	uint64_t val = 0;
	CHECK(vm_set_register(v, VM_REG_GUEST_RIP, 0xfff0) == 0);
	CHECK(vm_get_register(v, VM_REG_GUEST_RIP, &val) == 0 && val == 0xfff0);

	/* The ioctl face, with the FreeBSD struct. */
	struct vm_register reg = {};
	reg.cpuid = 0;
	reg.regnum = VM_REG_GUEST_RIP;
	CHECK(vmm_ioctl(ctx, VM_GET_REGISTER, &reg) == 0 && reg.regval == 0xfff0);

	/* The trailer's prototype: the IOAPIC's version register. */
	uint64_t ioregsel = 1;
	CHECK(vm_readwrite_kernemu_device(v, 0xfec00000, true, 4, &ioregsel) == 0);
	CHECK(vm_readwrite_kernemu_device(v, 0xfec00010, false, 4, &val) == 0);
	CHECK((val & 0xff) == 0x11);

	/* The trailer's inline wrapper over vm_inject_fault: #GP(0). */
	uint64_t i1 = 0, i2 = 0;
	vm_inject_gp(v);
	CHECK(vm_get_intinfo(v, &i1, &i2) == 0);
	CHECK(VM_INTINFO_VECTOR(i2) == 13 && (i2 & VM_INTINFO_VALID) != 0);

	CHECK(vm_ioapic_assert_irq(ctx, 99) == -1 && errno == EINVAL);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	std::printf("cxx_link_test: %s\n", failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
