/*
 * The libvmmapi functions bhyve(8) calls beyond the ioctls: its -m
 * argument (vm_parse_memsize), memory flags, device memory
 * (vm_create_devmem), the reverse map and layout queries, vcpu_reset for
 * an AP, bhyveload's register setups, guest-linear copies (vm_copy_setup/copyin/copyout, string I/O),
 * and the bookkeeping calls (names, capability names, APIC ids, rights);
 * FreeBSD 15's vm_get_highmem_base and vm_raise_msi.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "apic_util.h"

#define MB (1024UL * 1024)
#define GB (1024UL * MB)

static void
parse_memsize(void)
{
	size_t sz = 0;
	CHECK_OK(vm_parse_memsize("512", &sz));
	CHECK(sz == 512 * MB); /* a plain number below 1 MiB: megabytes */
	CHECK_OK(vm_parse_memsize("4G", &sz));
	CHECK(sz == 4 * GB);
	CHECK_OK(vm_parse_memsize("1536mb", &sz));
	CHECK(sz == 1536 * MB);
	CHECK_OK(vm_parse_memsize("0x10000000", &sz));
	CHECK(sz == 256 * MB);
	CHECK_ERR(vm_parse_memsize("4X", &sz), EINVAL);
	CHECK_ERR(vm_parse_memsize("", &sz), EINVAL);
	CHECK_ERR(vm_parse_memsize("-1", &sz), EINVAL);
	CHECK_ERR(vm_parse_memsize("16e", &sz), ERANGE);
	CHECK_ERR(vm_parse_memsize(NULL, &sz), EFAULT);
	CHECK_ERR(vm_parse_memsize("1g", NULL), EFAULT);
}

static void
names_and_rights(struct vmctx *ctx)
{
	size_t n = 0;
	const char *name = vm_get_name(ctx);
	CHECK(name != NULL && strcmp(name, "vmmapi") == 0);
	errno = 0;
	CHECK(vm_get_name(NULL) == NULL && errno == EFAULT);
	/* FreeBSD 14 libvmmapi's names (capstrmap), one for every capability:
	 * bhyve's -x and bhyvectl's --getcap/--setcap spell them so. */
	static const struct {
		const char *name;
		int cap;
	} caps[] = {
		{ "hlt_exit", VM_CAP_HALT_EXIT },
		{ "mtrap_exit", VM_CAP_MTRAP_EXIT },
		{ "pause_exit", VM_CAP_PAUSE_EXIT },
		{ "unrestricted_guest", VM_CAP_UNRESTRICTED_GUEST },
		{ "enable_invpcid", VM_CAP_ENABLE_INVPCID },
		{ "bpt_exit", VM_CAP_BPT_EXIT },
		{ "rdpid", VM_CAP_RDPID },
		{ "rdtscp", VM_CAP_RDTSCP },
		{ "ipi_exit", VM_CAP_IPI_EXIT },
		{ "mask_hwintr", VM_CAP_MASK_HWINTR },
		{ "rflags_tf", VM_CAP_RFLAGS_TF },
	};
	CHECK(sizeof(caps) / sizeof(caps[0]) == VM_CAP_MAX);
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		CHECK(vm_capability_name2type(caps[i].name) == caps[i].cap);
		const char *cname = vm_capability_type2name(caps[i].cap);
		CHECK(cname != NULL && strcmp(cname, caps[i].name) == 0);
	}
	CHECK(vm_capability_name2type("no_such_cap") == -1);
	CHECK(vm_capability_name2type(NULL) == -1);
	CHECK(vm_capability_type2name(VM_CAP_MAX) == NULL);
	CHECK(vm_capability_type2name(-1) == NULL);
	CHECK(vm_apicid2vcpu(ctx, 3) == 3);
	CHECK_OK(vm_limit_rights(ctx));
	CHECK_ERR(vm_limit_rights(NULL), EFAULT);
	CHECK(vm_get_ioctls(&n) == NULL && n == 60);
	const unsigned long *cmds = vm_get_ioctls(NULL);
	CHECK(cmds != NULL);
	if (cmds != NULL) {
		CHECK(cmds[0] == VM_RUN && cmds[n - 1] == VM_RESTORE_TIME);
		free((void *)cmds);
	}
}

static void
memory(struct vmctx *ctx)
{
	vm_paddr_t gpa = 0;
	vm_ooffset_t off;
	int segid, prot, flags;
	size_t len, low, high;
	char *base = NULL;

	/*
	 * The flags are kept; wired maps themselves are wired_test.c's (they
	 * lock host memory). Guest memory is 3 GiB low + 1 GiB high.
	 */
	CHECK(vm_get_memflags(ctx) == 0);
	vm_set_memflags(ctx, VM_MEM_F_WIRED | VM_MEM_F_INCORE);
	CHECK(vm_get_memflags(ctx) == (VM_MEM_F_WIRED | VM_MEM_F_INCORE));
	vm_set_memflags(ctx, 0);
	CHECK_OK(vm_setup_memory(ctx, 4 * GB, VM_MMAP_ALL));
	CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &off, &len, &prot, &flags));
	CHECK(gpa == 0 && flags == 0);

	CHECK_OK(vm_get_guestmem_from_ctx(ctx, &base, &low, &high));
	CHECK(base == vm_map_gpa(ctx, 0, 1) && low == 3 * GB && high == 1 * GB);
	CHECK_ERR(vm_get_guestmem_from_ctx(ctx, NULL, &low, &high), EFAULT);
	CHECK_ERR(vm_get_guestmem_from_ctx(ctx, &base, NULL, &high), EFAULT);
	CHECK_ERR(vm_get_guestmem_from_ctx(ctx, &base, &low, NULL), EFAULT);
	CHECK(vm_rev_map_gpa(ctx, vm_map_gpa(ctx, 0x1234, 8)) == 0x1234);
	CHECK(vm_rev_map_gpa(ctx, vm_map_gpa(ctx, 4 * GB + 16, 8)) == 4 * GB + 16);
	CHECK(vm_rev_map_gpa(ctx, base + 3 * GB + 4096) == (uint64_t)-1); /* the hole */

	/* Device memory: its host address, shared with the segment. */
	char *rom = vm_create_devmem(ctx, VM_BOOTROM, "bootrom", 2 * MB);
	CHECK(rom != MAP_FAILED);
	if (rom != MAP_FAILED) {
		memcpy(rom + 2 * MB - 16, "reset vector", 13);
		CHECK(vm_create_devmem(ctx, VM_BOOTROM, "bootrom", 2 * MB) == rom);
		CHECK_OK(vm_mmap_memseg(ctx, 4 * GB - 2 * MB, VM_BOOTROM, 0, 2 * MB, PROT_READ | PROT_EXEC));
	}
	char name[16];
	CHECK_OK(vm_get_memseg(ctx, VM_BOOTROM, &len, name, sizeof(name)));
	CHECK(len == 2 * MB && strcmp(name, "bootrom") == 0);
	errno = 0;
	CHECK(vm_create_devmem(ctx, VM_BOOTROM, "bootrom", 4 * MB) == MAP_FAILED && errno == EINVAL);
	errno = 0;
	CHECK(vm_create_devmem(ctx, VM_FRAMEBUFFER, "", MB) == MAP_FAILED && errno == EINVAL);
	errno = 0;
	CHECK(vm_create_devmem(ctx, VM_FRAMEBUFFER, "a-name-too-long-for-it", MB) == MAP_FAILED &&
	    errno == ENAMETOOLONG);
}

static void
reset_for_an_ap(struct vcpu *v)
{
	uint64_t val, base;
	uint32_t limit, access;
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RIP, 0x1234));
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_CR0, 0x80000011));
	CHECK_OK(vcpu_reset(v));
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RIP, &val));
	CHECK(val == 0xfff0);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_CR0, &val));
	CHECK(val == 0x20);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RDX, &val));
	CHECK(val == 0xf00);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_CS, &val));
	CHECK(val == 0xf000);
	CHECK_OK(vm_get_desc(v, VM_REG_GUEST_CS, &base, &limit, &access));
	CHECK(base == 0xffff0000 && limit == 0xffff && access == 0x93);
	CHECK_ERR(vcpu_reset(NULL), EFAULT);
}

/* bhyveload's entry states: long mode, and flat 32-bit with its GDT. */
static void
freebsd_loader_states(struct vmctx *ctx, struct vcpu *v)
{
	uint64_t gdt[3], val, base;
	uint32_t limit, access;

	vm_setup_freebsd_gdt(gdt);
	CHECK(gdt[0] == 0 && gdt[1] == 0x0020980000000000ULL && gdt[2] == 0x0000900000000000ULL);
	CHECK_OK(vm_setup_freebsd_registers(v, 0x200000, 0x5000, 0x3000, 0x7000));
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_EFER, &val));
	CHECK(val == 0x500);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_CS, &val));
	CHECK(val == 0x8);
	CHECK_OK(vm_get_desc(v, VM_REG_GUEST_GDTR, &base, &limit, &access));
	CHECK(base == 0x3000 && limit == 23);

	CHECK_OK(vm_setup_freebsd_registers_i386(v, 0x100000, 0x2000, 0x8000));
	const uint64_t *g = vm_map_gpa(ctx, 0x2000, 32);
	CHECK(g != NULL && g[1] == 0x00cf9a000000ffffULL && g[3] == 0x0000890030000067ULL);
	CHECK_OK(vm_get_desc(v, VM_REG_GUEST_TR, &base, &limit, &access));
	CHECK(base == 0x3000 && limit == 103 && access == 0x8b);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_CR0, &val));
	CHECK(val == 0x21);
	/* A GDT outside guest RAM: EFAULT, nothing changed. */
	CHECK(vm_setup_freebsd_registers_i386(v, 0x100000, 3 * GB + 4096, 0x8000) == EFAULT && errno == EFAULT);
	CHECK_ERR(vm_setup_freebsd_registers(NULL, 0, 0, 0, 0), EFAULT);
}

static void
linear_copies(struct vmctx *ctx, struct vcpu *v)
{
	struct vm_guest_paging flat = { .cpu_mode = CPU_MODE_PROTECTED, .paging_mode = PAGING_MODE_FLAT };
	struct iovec iov[3];
	char buf[9] = { 0 };
	int fault = -1;

	/* Eight bytes across a page boundary: two iovecs, the third zeroed. */
	CHECK_OK(vm_copy_setup(v, &flat, 0x1ffc, 8, PROT_WRITE, iov, 3, &fault));
	CHECK(fault == 0 && iov[0].iov_len == 4 && iov[1].iov_len == 4 && iov[2].iov_base == NULL);
	CHECK(iov[0].iov_base == vm_map_gpa(ctx, 0x1ffc, 4) && iov[1].iov_base == vm_map_gpa(ctx, 0x2000, 4));
	vm_copyout("ABCDEFGH", iov, 8);
	CHECK(memcmp(vm_map_gpa(ctx, 0x1ffc, 8), "ABCDEFGH", 8) == 0);
	vm_copyin(iov, buf, 8);
	CHECK(strcmp(buf, "ABCDEFGH") == 0);
	vm_copy_teardown(iov, 3);
	/* Three pages' worth: three iovecs, copied through in order. */
	char big[8192];
	memset(big, 'x', sizeof(big));
	big[0] = '<';
	big[sizeof(big) - 1] = '>';
	CHECK_OK(vm_copy_setup(v, &flat, 0x3ff8, sizeof(big), PROT_WRITE, iov, 3, &fault));
	CHECK(fault == 0 && iov[0].iov_len == 8 && iov[1].iov_len == 4096 && iov[2].iov_len == 4088);
	vm_copyout(big, iov, sizeof(big));
	const char *g = vm_map_gpa(ctx, 0x3ff8, sizeof(big));
	CHECK(g != NULL && g[0] == '<' && g[sizeof(big) - 1] == '>');
	memset(big, 0, sizeof(big));
	vm_copyin(iov, big, sizeof(big));
	CHECK(big[0] == '<' && big[4096] == 'x' && big[sizeof(big) - 1] == '>');
	/* Too few iovecs, or a page outside guest RAM: EFAULT, the iovecs
	 * before it filled. */
	errno = 0;
	CHECK(vm_copy_setup(v, &flat, 0x1ffc, 8, PROT_READ, iov, 1, &fault) == EFAULT && errno == EFAULT);
	CHECK(iov[0].iov_len == 4);
	CHECK(vm_copy_setup(v, &flat, 3 * GB - 4, 8, PROT_READ, iov, 3, &fault) == EFAULT);
	CHECK(iov[0].iov_len == 4 && iov[1].iov_base == NULL);
	CHECK_ERR(vm_copy_setup(v, NULL, 0, 4, PROT_READ, iov, 3, &fault), EFAULT);
	CHECK_ERR(vm_copy_setup(v, &flat, 0, 4, PROT_READ, iov, -1, &fault), EINVAL);
	/* A guest fault: 0 with *fault set, #PF queued (a zeroed PML4 at
	 * 0x10000 maps nothing). */
	struct vm_guest_paging paged = { .cr3 = 0x10000, .cpu_mode = CPU_MODE_64BIT, .paging_mode = PAGING_MODE_64 };
	uint64_t i1, i2;
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_CR0, 0x80000011));
	CHECK_OK(vm_copy_setup(v, &paged, 0x400000, 8, PROT_READ, iov, 3, &fault));
	CHECK(fault == 1 && iov[0].iov_base == NULL);
	CHECK_OK(vm_get_intinfo(v, &i1, &i2));
	CHECK((i2 & 0xff) == 14);
}

/*
 * FreeBSD 15's additions that newer bhyve calls: the high-memory base
 * (boot-ROM code) and vm_raise_msi (PCI MSI), and the API version
 * code built for several releases tests.
 */
#if VMMAPI_VERSION != 0200
#error "VMMAPI_VERSION must be FreeBSD 14's 0200"
#endif

static void
freebsd15_calls(void)
{
	watchdog_phase("FreeBSD 15 calls");
	CHECK_OK(vm_create("vmmapi15"));
	struct vmctx *ctx = vm_open("vmmapi15");
	struct vcpu *v = vm_vcpu_open(ctx, 0);
	CHECK(ctx != NULL && v != NULL);
	if (ctx == NULL || v == NULL)
		return;
	CHECK(vm_get_highmem_base(ctx) == 4 * GB);
	CHECK_OK(vm_setup_memory(ctx, 3 * GB + 2 * MB, VM_MMAP_ALL));
	CHECK(vm_get_highmem_base(ctx) == 4 * GB);
	CHECK(vm_get_highmem_size(ctx) == 2 * MB);
	CHECK(vm_map_gpa(ctx, vm_get_highmem_base(ctx), 2 * MB) != NULL);
	CHECK(vm_map_gpa(ctx, vm_get_highmem_base(ctx) - 1, 1) == NULL);
	errno = 0;
	CHECK(vm_get_highmem_base(NULL) == 0 && errno == EFAULT);

	/* An MSI from a device at 0:3.0 to APIC 0, vector 0x49. */
	CHECK_OK(vm_activate_cpu(v));
	lapic_enable(v);
	CHECK(lapic_bit(v, LAPIC_IRR, 0x49) == 0);
	CHECK_OK(vm_raise_msi(ctx, LAPIC_GPA, 0x49, 0, 3, 0));
	CHECK(lapic_bit(v, LAPIC_IRR, 0x49) == 1);
	CHECK_ERR(vm_raise_msi(ctx, IOAPIC_GPA, 0x4a, 0, 3, 0), EINVAL);
	CHECK(lapic_bit(v, LAPIC_IRR, 0x4a) == 0);
	CHECK_ERR(vm_raise_msi(NULL, LAPIC_GPA, 0x49, 0, 3, 0), EFAULT);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	errno = 0;
	CHECK(vm_get_highmem_base(ctx) == 0 && errno == EBADF);
	CHECK_ERR(vm_raise_msi(ctx, LAPIC_GPA, 0x49, 0, 3, 0), EBADF);
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;

	watchdog_start(60, "vmmapi_test");
	parse_memsize();
	CHECK_OK(vm_create("vmmapi"));
	ctx = vm_open("vmmapi");
	v = vm_vcpu_open(ctx, 0);
	names_and_rights(ctx);
	memory(ctx);
	reset_for_an_ap(v);
	freebsd_loader_states(ctx, v);
	linear_copies(ctx, v);
	freebsd15_calls();

	vm_vcpu_close(v);
	vm_destroy(ctx);
	/* After vm_destroy the handle is gone. */
	CHECK_ERR(vm_limit_rights(ctx), EBADF);
	return test_finish("vmmapi_test");
}
