/*
 * API misuse: every function of vmm_rs.h given bad input fails cleanly
 * with the errno its header comment (or the README's error rules) names,
 * and never crashes: NULL and stale handles (closed, VM destroyed, not a
 * handle, the other kind of handle), NULL out-pointers, out-of-range vCPU
 * ids, pins, vectors, registers, capabilities, memory segments, unknown
 * ioctl commands and NULL ioctl arguments. Then the VM that took all of it
 * must still work with its state intact. Also the positive side of
 * vm_get_lowmem_limit, vm_set_lowmem_limit and vm_lapic_local_irq.
 */
#include <limits.h>
#include <stdint.h>
#include <sys/mman.h>

#include "apic_util.h"

#define MB (1024UL * 1024)
#define PROT_ALL (PROT_READ | PROT_WRITE | PROT_EXEC)

/* Local APIC local vector table registers and bits. */
#define LAPIC_ESR 0x280
#define LAPIC_LVT_CMCI 0x2F0
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_THERMAL 0x330
#define LAPIC_LVT_PERF 0x340
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_LINT1 0x360
#define LAPIC_LVT_ERROR 0x370
#define LVT_MASKED 0x10000u
#define LVT_DM_NMI 0x400u
/* Indexes for VM_LAPIC_LOCAL_IRQ (FreeBSD APIC_LVT_*). */
enum { LVT_LINT0, LVT_LINT1, LVT_TIMER, LVT_ERROR, LVT_PMC, LVT_THERMAL, LVT_CMCI };

/* Something that is certainly not a handle. */
static long not_a_handle;

static void *
check_null_at(void *p, int err, int line, const char *call, const char *errname)
{
	int e = errno;
	t_checks++;
	if (p != NULL || e != err) {
		fprintf(stderr, "%s:%d: %s: expected NULL/%s, got %p/%s\n", __FILE__,
		    line, call, errname, p, strerror(e));
		t_failures++;
	}
	return p;
}

/* Checks that `call` returns NULL with errno `err`; evaluates to the pointer. */
#define CHECK_NULL(call, err) \
	(errno = 0, check_null_at((void *)(call), (err), __LINE__, #call, #err))

static int
guest_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	(void)cookie;
	(void)vcpuid;
	(void)rip;
	a->kind = VMM_RS_ACT_HLT;
	return 1;
}

static void
guest_interrupt(void *cookie, int vcpuid, int vector)
{
	(void)cookie;
	(void)vcpuid;
	(void)vector;
}

/*
 * Every function taking a struct vmctx *, given `bad` and otherwise valid
 * arguments: -1 (or NULL, or 0 for the size getters) with errno `err`.
 * The valid arguments aim at the VM "misuse": a call that wrongly reached
 * it would show in its final checks.
 */

/* The pass-through calls and vm_get_gpa_pmap: `ppt_err` from the first,
 * `pmap_err` from the last. */
static void
check_pptdev_calls(struct vmctx *ctx, int ppt_err, int pmap_err)
{
	uint64_t pte[4];
	int num = 0;
	CHECK_ERR(vm_assign_pptdev(ctx, 1, 0, 0), ppt_err);
	CHECK_ERR(vm_unassign_pptdev(ctx, 1, 0, 0), ppt_err);
	CHECK_ERR(vm_map_pptdev_mmio(ctx, 1, 0, 0, 0xc0000000, 4096, 0xe0000000), ppt_err);
	CHECK_ERR(vm_unmap_pptdev_mmio(ctx, 1, 0, 0, 0xc0000000, 4096), ppt_err);
	CHECK_ERR(vm_setup_pptdev_msi(ctx, 1, 0, 0, 0xfee00000, 0x40, 1), ppt_err);
	CHECK_ERR(vm_setup_pptdev_msix(ctx, 1, 0, 0, 0, 0xfee00000, 0x40, 0), ppt_err);
	CHECK_ERR(vm_disable_pptdev_msix(ctx, 1, 0, 0), ppt_err);
	CHECK_ERR(vm_get_gpa_pmap(ctx, 0, pte, &num), pmap_err);
}
static void
check_bad_ctx(struct vmctx *bad, int err, const char *what)
{
	int pins = -1, segid, prot, flags;
	size_t len = 0;
	vm_paddr_t gpa = 0;
	vm_ooffset_t segoff;
	uint16_t s, c, t, m;
	cpuset_t set;
	struct vmm_rs_ioapic_stats st;
	struct vm_cpu_topology topo;
	struct vm_register reg = { .cpuid = 0, .regnum = VM_REG_GUEST_RAX };
	struct vm_ioapic_irq pin = { .irq = 9 };
	struct vm_memseg seg = { .segid = 0 };
	struct vm_munmap um = { .gpa = 0, .len = 4 * MB };
	struct vcpu *v;

	fprintf(stderr, "-- bad ctx handle: %s\n", what);
	CHECK_ERR(vm_ioapic_assert_irq(bad, 9), err);
	CHECK_ERR(vm_ioapic_deassert_irq(bad, 9), err);
	CHECK_ERR(vm_ioapic_pulse_irq(bad, 9), err);
	CHECK_ERR(vm_ioapic_pincount(bad, &pins), err);
	CHECK(pins == -1);
	CHECK_ERR(vm_isa_assert_irq(bad, 9, 9), err);
	CHECK_ERR(vm_isa_deassert_irq(bad, 9, 9), err);
	CHECK_ERR(vm_isa_pulse_irq(bad, 9, -1), err);
	CHECK_ERR(vm_isa_set_irq_trigger(bad, 9, LEVEL_TRIGGER), err);
	CHECK_ERR(vm_lapic_msi(bad, 0xFEE00000u, 0x49), err);
	CHECK_ERR(vm_raise_msi(bad, 0xFEE00000u, 0x49, 0, 3, 0), err);
	errno = 0;
	CHECK(vm_get_highmem_base(bad) == 0 && errno == err);
	CHECK_ERR(vmm_rs_ioapic_stats(bad, &st), err);
	CHECK_ERR(vmm_rs_set_mmio_exitcode(bad, VM_EXITCODE_MMIO), err);
	/* VM_GET_GPA_PMAP is refused before the VM is looked at, as
	 * vmm_ioctl refuses an unknown command. */
	check_pptdev_calls(bad, err, strcmp(what, "destroyed VM") == 0 ? ENOTTY : err);
	/* vmm_ioctl, one command of each lock class, and the pin fast path. */
	CHECK_ERR(vmm_ioctl(bad, VM_GET_TOPOLOGY, &topo), err);
	CHECK_ERR(vmm_ioctl(bad, VM_IOAPIC_PULSE_IRQ, &pin), err);
	CHECK_ERR(vmm_ioctl(bad, VM_GET_REGISTER, &reg), err);
	CHECK_ERR(vmm_ioctl(bad, VM_GET_MEMSEG, &seg), err);
	CHECK_ERR(vmm_ioctl(bad, VM_MUNMAP_MEMSEG, &um), err);
	CHECK_ERR(vmm_ioctl(bad, VM_REINIT, NULL), err);
	/* Also on a second handle to a destroyed VM. */
	v = CHECK_NULL(vm_vcpu_open(bad, 0), err);
	if (v != NULL)
		vm_vcpu_close(v);
	CHECK_ERR(vm_alloc_memseg(bad, 2, MB, NULL), err);
	CHECK_ERR(vm_get_memseg(bad, 0, &len, NULL, 0), err);
	CHECK_ERR(vm_mmap_memseg(bad, 64 * MB, 0, 0, MB, PROT_READ), err);
	CHECK_ERR(vm_munmap_memseg(bad, 0, 4 * MB), err);
	CHECK_ERR(vm_mmap_getnext(bad, &gpa, &segid, &segoff, &len, &prot, &flags), err);
	CHECK_ERR(vm_setup_memory(bad, 4 * MB, VM_MMAP_ALL), err);
	/* No error return in these: NULL or 0, with errno. */
	errno = 0;
	CHECK(vm_map_gpa(bad, 0, 4096) == NULL && errno == err);
	errno = 0;
	CHECK(vm_get_lowmem_size(bad) == 0 && errno == err);
	errno = 0;
	CHECK(vm_get_highmem_size(bad) == 0 && errno == err);
	errno = 0;
	vm_set_lowmem_limit(bad, 1 * MB); /* must reach no VM */
	CHECK(errno == err);
	errno = 0;
	CHECK(vm_get_lowmem_limit(bad) == 0 && errno == err);
	errno = 0;
	vm_set_memflags(bad, VM_MEM_F_WIRED); /* must reach no VM */
	CHECK(errno == err);
	errno = 0;
	CHECK(vm_get_memflags(bad) == -1 && errno == err);
	errno = 0;
	CHECK(vm_create_devmem(bad, VM_BOOTROM, "rom", MB) == MAP_FAILED && errno == err);
	errno = 0;
	CHECK(vm_create_devmem(bad, VM_BOOTROM, NULL, MB) == MAP_FAILED && errno == EFAULT);
	errno = 0;
	CHECK(vm_rev_map_gpa(bad, &len) == (uint64_t)-1 && errno == err);
	errno = 0;
	CHECK(vm_get_name(bad) == NULL && errno == err);
	{
		char *base = NULL;
		size_t lo = 42, hi = 42;
		CHECK_ERR(vm_get_guestmem_from_ctx(bad, &base, &lo, &hi), err);
		CHECK(lo == 42 && hi == 42);
	}
	CHECK_ERR(vm_limit_rights(bad), err);
	CHECK_ERR(vm_active_cpus(bad, &set), err);
	CHECK_ERR(vm_suspended_cpus(bad, &set), err);
	CHECK_ERR(vm_debug_cpus(bad, &set), err);
	CHECK_ERR(vm_suspend_all_cpus(bad), err);
	CHECK_ERR(vm_resume_all_cpus(bad), err);
	CHECK_ERR(vm_suspend(bad, VM_SUSPEND_POWEROFF), err);
	CHECK_ERR(vm_reinit(bad), err);
	CHECK_ERR(vm_set_topology(bad, 1, 1, 1, 0), err);
	CHECK_ERR(vm_get_topology(bad, &s, &c, &t, &m), err);
	{
		uint8_t b = 0x42;
		time_t secs = 42;
		CHECK_ERR(vm_rtc_write(bad, 0x40, 1), err);
		CHECK_ERR(vm_rtc_read(bad, 0x40, &b), err);
		CHECK_ERR(vm_rtc_settime(bad, 1000), err);
		CHECK_ERR(vm_rtc_gettime(bad, &secs), err);
		uint32_t caps = 42;
		CHECK_ERR(vm_get_hpet_capabilities(bad, &caps), err);
		CHECK(b == 0x42 && secs == 42); /* nothing written on failure */
		CHECK(caps == 0); /* libvmmapi stores the zeroed value whatever the result */
		errno = 0;
		CHECK(vm_get_stat_desc(bad, 0) == NULL && errno == err);
	}
}

/* RTC calls: NULL out-pointers, offsets and times out of range. */
static void
check_rtc(struct vmctx *ctx)
{
	const int bad_write[] = { -1, 0, 9, 10, 11, 12, 13, 0x32, 128, INT_MAX, INT_MIN };
	const int bad_read[] = { -1, 128, INT_MAX, INT_MIN };
	uint8_t b = 0x42;
	time_t secs = 42;

	CHECK_OK(vm_rtc_write(ctx, 0x40, 0x99));
	CHECK_OK(vm_rtc_settime(ctx, 1000000000));
	for (size_t i = 0; i < sizeof(bad_write) / sizeof(bad_write[0]); i++)
		CHECK_ERR(vm_rtc_write(ctx, bad_write[i], 1), EINVAL);
	for (size_t i = 0; i < sizeof(bad_read) / sizeof(bad_read[0]); i++)
		CHECK_ERR(vm_rtc_read(ctx, bad_read[i], &b), EINVAL);
	CHECK(b == 0x42);
	CHECK_ERR(vm_rtc_read(ctx, 0x40, NULL), EFAULT);
	CHECK_ERR(vm_rtc_read(NULL, 0x40, NULL), EFAULT);
	CHECK_ERR(vm_rtc_gettime(ctx, NULL), EFAULT);
	CHECK_ERR(vm_rtc_gettime(NULL, NULL), EFAULT);
	CHECK_ERR(vm_rtc_settime(ctx, -2), EINVAL);
	CHECK_ERR(vm_rtc_settime(ctx, (time_t)253402300800LL), EINVAL); /* year 10000 */
	{
		struct vm_rtc_data d = { .offset = 0x32, .value = 0x20 };
		CHECK_ERR(vmm_ioctl(ctx, VM_RTC_WRITE, &d), EINVAL);
		d.offset = 128;
		CHECK_ERR(vmm_ioctl(ctx, VM_RTC_READ, &d), EINVAL);
	}
	/* Nothing the bad calls did changed the RTC. */
	CHECK_OK(vm_rtc_read(ctx, 0x40, &b));
	CHECK(b == 0x99);
	CHECK_OK(vm_rtc_gettime(ctx, &secs));
	CHECK(secs >= 1000000000 && secs < 1000000000 + 600);
}

/* Every function taking a struct vcpu *, given `bad`. */
static void
check_bad_vcpu(struct vcpu *bad, int err, const char *what, int id_if_open)
{
	uint64_t val = 0, i1, i2, base;
	uint32_t limit, access;
	int regs[2] = { VM_REG_GUEST_RAX, VM_REG_GUEST_RBX };
	uint64_t vals[2] = { 1, 2 };
	int cap;
	enum x2apic_state state;
	struct seg_desc sd;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct vmm_rs_guest_ops ops = { .next = guest_next };
	struct vmm_rs_action act = { .kind = VMM_RS_ACT_HLT };
	struct vmm_rs_guest_stats gs;

	fprintf(stderr, "-- bad vcpu handle: %s\n", what);
	/* vcpu_id reads the handle alone: it answers while the handle is open. */
	if (id_if_open >= 0)
		CHECK(vcpu_id(bad) == id_if_open);
	else
		CHECK_ERR(vcpu_id(bad), err);
	CHECK_ERR(vmm_rs_vcpu_state(bad), err);
	{
		struct timeval tv = { .tv_sec = 42 };
		int n = 42;
		errno = 0;
		CHECK(vm_get_stats(bad, &tv, &n) == NULL && errno == err);
		CHECK(tv.tv_sec == 42 && n == 42);
		struct vm_guest_paging pg = { .paging_mode = PAGING_MODE_FLAT };
		uint64_t gpa = 42;
		int fault = 42;
		CHECK_ERR(vm_gla2gpa(bad, &pg, 0x1000, PROT_READ, &gpa, &fault), err);
		CHECK_ERR(vm_gla2gpa_nofault(bad, &pg, 0x1000, PROT_READ, &gpa, &fault), err);
		CHECK(gpa == 42 && fault == 42);
		struct iovec iov[2];
		CHECK_ERR(vm_copy_setup(bad, &pg, 0x1000, 8, PROT_READ, iov, 2, &fault), err);
	}
	CHECK_ERR(vcpu_reset(bad), err);
	CHECK_ERR(vm_setup_freebsd_registers(bad, 0, 0, 0, 0), err);
	CHECK_ERR(vm_setup_freebsd_registers_i386(bad, 0, 0x1000, 0), err);
	CHECK_ERR(vm_run(bad, &vmrun), err);
	CHECK_ERR(vm_set_register(bad, VM_REG_GUEST_RAX, 1), err);
	CHECK_ERR(vm_get_register(bad, VM_REG_GUEST_RAX, &val), err);
	CHECK_ERR(vm_set_register_set(bad, 2, regs, vals), err);
	CHECK_ERR(vm_get_register_set(bad, 2, regs, vals), err);
	CHECK_ERR(vm_set_desc(bad, VM_REG_GUEST_CS, 0, 0xffff, 0x9b), err);
	CHECK_ERR(vm_get_desc(bad, VM_REG_GUEST_CS, &base, &limit, &access), err);
	CHECK_ERR(vm_get_seg_desc(bad, VM_REG_GUEST_CS, &sd), err);
	CHECK_ERR(vm_get_capability(bad, VM_CAP_HALT_EXIT, &cap), err);
	CHECK_ERR(vm_set_capability(bad, VM_CAP_HALT_EXIT, 0), err);
	CHECK_ERR(vm_get_intinfo(bad, &i1, &i2), err);
	CHECK_ERR(vm_set_intinfo(bad, 0), err);
	CHECK_ERR(vm_inject_exception(bad, 13, 1, 0, 0), err);
	errno = 0;
	vm_inject_fault(bad, 13, 1, 0);
	CHECK(errno == err);
	errno = 0;
	vm_inject_gp(bad);
	CHECK(errno == err);
	errno = 0;
	vm_inject_ud(bad);
	CHECK(errno == err);
	errno = 0;
	vm_inject_ac(bad, 0);
	CHECK(errno == err);
	errno = 0;
	vm_inject_ss(bad, 0);
	CHECK(errno == err);
	CHECK_ERR(vm_restart_instruction(bad), err);
	CHECK_ERR(vm_activate_cpu(bad), err);
	CHECK_ERR(vm_suspend_cpu(bad), err);
	CHECK_ERR(vm_resume_cpu(bad), err);
	CHECK_ERR(vm_lapic_irq(bad, 0x49), err);
	CHECK_ERR(vm_lapic_local_irq(bad, LVT_LINT0), err);
	CHECK_ERR(vm_inject_nmi(bad), err);
	CHECK_ERR(vm_get_x2apic_state(bad, &state), err);
	CHECK_ERR(vm_set_x2apic_state(bad, X2APIC_ENABLED), err);
	CHECK_ERR(vm_readwrite_kernemu_device(bad, LAPIC_GPA + 0x20, false, 4, &val), err);
	CHECK_ERR(vmm_rs_guest_set_ops(bad, &ops, NULL), err);
	CHECK_ERR(vmm_rs_guest_set_script(bad, &act, 1, -1), err);
	CHECK_ERR(vmm_rs_guest_clear(bad), err);
	CHECK_ERR(vmm_rs_guest_stats(bad, &gs), err);
}

/* Names, vmm_rs_set_maxcpus. */
static void
check_global(void)
{
	char longname[VM_MAX_NAMELEN + 2];

	CHECK_ERR(vm_create(NULL), EFAULT);
	CHECK_ERR(vm_create(""), EINVAL);
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0'; /* VM_MAX_NAMELEN + 1 chars */
	CHECK_ERR(vm_create(longname), EINVAL);
	CHECK_ERR(vm_create("a/b"), EINVAL); /* not a device name */
	CHECK_NULL(vm_open(NULL), EFAULT);
	CHECK_NULL(vm_open(""), ENOENT);
	CHECK_NULL(vm_open("no-such-vm"), ENOENT);
	CHECK_NULL(vm_open(longname), ENOENT);
	CHECK_NULL(vm_open("misuse/x"), ENOENT);
	/* A name vm_create refuses names no VM. */
	CHECK_ERR(vm_create("\xff\xfe-vm"), EINVAL);
	CHECK_NULL(vm_open("\xff\xfe-vm"), ENOENT);
	/* vm_openf: vm_open's answers without VMMAPI_OPEN_CREATE, vm_create's
	 * with it; flags it does not know are EINVAL. */
	CHECK_NULL(vm_openf(NULL, 0), EFAULT);
	CHECK_NULL(vm_openf(NULL, VMMAPI_OPEN_CREATE | VMMAPI_OPEN_REINIT), EFAULT);
	CHECK_NULL(vm_openf("", 0), ENOENT);
	CHECK_NULL(vm_openf(longname, VMMAPI_OPEN_REINIT), ENOENT);
	CHECK_NULL(vm_openf("\xff\xfe-vm", 0), ENOENT);
	CHECK_NULL(vm_openf("", VMMAPI_OPEN_CREATE), EINVAL);
	CHECK_NULL(vm_openf(longname, VMMAPI_OPEN_CREATE), EINVAL);
	CHECK_NULL(vm_openf("a/b", VMMAPI_OPEN_CREATE), EINVAL);
	CHECK_NULL(vm_openf("\xff\xfe-vm", VMMAPI_OPEN_CREATE), EINVAL);
	CHECK_NULL(vm_openf("no-such-vm", 4), EINVAL);
	CHECK_NULL(vm_openf("no-such-vm", INT_MIN), EINVAL);
	CHECK_NULL(vm_openf("no-such-vm", 0), ENOENT); /* none was made */

	CHECK_ERR(vmm_rs_set_maxcpus(0), EINVAL);
	CHECK_ERR(vmm_rs_set_maxcpus(-1), EINVAL);
	CHECK_ERR(vmm_rs_set_maxcpus(257), EINVAL);
	CHECK_ERR(vmm_rs_set_maxcpus(INT_MIN), EINVAL);
	CHECK_ERR(vmm_rs_set_maxcpus(INT_MAX), EINVAL);
	/* (The VM created next must still get the default 16 vCPUs.) */

	/* libvmmapi's handle-free helpers: NULL is EFAULT, nothing crashes. */
	size_t sz = 42;
	CHECK_ERR(vm_parse_memsize(NULL, &sz), EFAULT);
	CHECK_ERR(vm_capability_name2type(NULL), EFAULT);
	CHECK(vm_capability_type2name(INT_MIN) == NULL && vm_capability_type2name(INT_MAX) == NULL);
	CHECK(vm_apicid2vcpu(NULL, 5) == 5);
	CHECK(vm_get_ioctls(&sz) == NULL && sz == 60);
	errno = 0;
	vm_setup_freebsd_gdt(NULL);
	CHECK(errno == EFAULT);
	errno = 0;
	vm_copyin(NULL, &sz, 8);
	CHECK(errno == EFAULT);
	errno = 0;
	vm_copyout(&sz, NULL, 8);
	CHECK(errno == EFAULT);
	{
		/* A short iovec list ends the copy (libvmmapi asserts). */
		char buf[8] = "abcdefg", dst[8] = { 0 };
		struct iovec iov[2] = { { .iov_base = dst, .iov_len = 4 }, { 0 } };
		errno = 0;
		vm_copyout(buf, iov, 8);
		CHECK(errno == EFAULT && memcmp(dst, "abcd", 4) == 0 && dst[4] == 0);
	}
	vm_copy_teardown(NULL, 0);
}

/* The IOAPIC, ISA and local APIC functions on a live VM. */
static void
check_interrupts(struct vmctx *ctx, struct vcpu *v0, struct vcpu *v1)
{
	int pins = 0;
	enum x2apic_state state;
	uint64_t val = 0;

	CHECK_OK(vm_ioapic_pincount(ctx, &pins));
	CHECK(pins == 32);
	CHECK_ERR(vm_ioapic_pincount(ctx, NULL), EFAULT);
	CHECK_ERR(vm_ioapic_pincount(NULL, NULL), EFAULT);
	{
		const int bad[] = { -1, pins, pins + 1, 1000, INT_MIN, INT_MAX };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			int p = bad[i];
			struct vm_ioapic_irq a = { .irq = p };
			struct vm_isa_irq isa = { .atpic_irq = 9, .ioapic_irq = p };
			CHECK_ERR(vm_ioapic_assert_irq(ctx, p), EINVAL);
			CHECK_ERR(vm_ioapic_deassert_irq(ctx, p), EINVAL);
			CHECK_ERR(vm_ioapic_pulse_irq(ctx, p), EINVAL);
			CHECK_ERR(vmm_ioctl(ctx, VM_IOAPIC_ASSERT_IRQ, &a), EINVAL);
			CHECK_ERR(vmm_ioctl(ctx, VM_IOAPIC_DEASSERT_IRQ, &a), EINVAL);
			CHECK_ERR(vmm_ioctl(ctx, VM_IOAPIC_PULSE_IRQ, &a), EINVAL);
			if (p == -1)
				continue; /* "no IOAPIC pin" for the ISA calls */
			CHECK_ERR(vm_isa_assert_irq(ctx, 9, p), EINVAL);
			CHECK_ERR(vm_isa_deassert_irq(ctx, 9, p), EINVAL);
			CHECK_ERR(vm_isa_pulse_irq(ctx, 9, p), EINVAL);
			CHECK_ERR(vmm_ioctl(ctx, VM_ISA_PULSE_IRQ, &isa), EINVAL);
		}
	}
	CHECK_ERR(vm_ioapic_deassert_irq(ctx, 9), ERANGE); /* count is 0 */
	{
		const int bad[] = { -1, 16, 1000, INT_MIN };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct vm_isa_irq isa = { .atpic_irq = bad[i], .ioapic_irq = 9 };
			/* The 8259 IRQ is checked before the IOAPIC pin is touched. */
			CHECK_ERR(vm_isa_assert_irq(ctx, bad[i], 9), EINVAL);
			CHECK_ERR(vm_isa_deassert_irq(ctx, bad[i], 9), EINVAL);
			CHECK_ERR(vm_isa_pulse_irq(ctx, bad[i], -1), EINVAL);
			CHECK_ERR(vm_isa_set_irq_trigger(ctx, bad[i], EDGE_TRIGGER), EINVAL);
			CHECK_ERR(vmm_ioctl(ctx, VM_ISA_ASSERT_IRQ, &isa), EINVAL);
			/* A trigger other than edge or level (FreeBSD: edge). */
			CHECK_ERR(vm_isa_set_irq_trigger(ctx, 9, bad[i]), EINVAL);
		}
	}
	/* Level on an IRQ the 8259 keeps edge-triggered. */
	CHECK_ERR(vm_isa_set_irq_trigger(ctx, 2, LEVEL_TRIGGER), EINVAL);
	CHECK_OK(vm_isa_set_irq_trigger(ctx, 9, LEVEL_TRIGGER));
	CHECK_OK(vm_isa_set_irq_trigger(ctx, 9, EDGE_TRIGGER));
	CHECK_ERR(vmm_rs_ioapic_stats(ctx, NULL), EFAULT);
	CHECK_ERR(vmm_rs_ioapic_stats(NULL, NULL), EFAULT);

	/* LAPIC IRQs: vectors 16-255 only. */
	{
		const int bad[] = { -1, 0, 2, 15, 256, 1000, INT_MIN, INT_MAX };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			CHECK_ERR(vm_lapic_irq(v0, bad[i]), EINVAL);
	}
	{
		const int bad[] = { -1, 16, 1000, INT_MIN };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct vm_lapic_irq li = { .cpuid = bad[i], .vector = 0x49 };
			struct vm_nmi nmi = { .cpuid = bad[i] };
			struct vm_x2apic x2 = { .cpuid = bad[i], .state = 0 };
			CHECK_ERR(vmm_ioctl(ctx, VM_LAPIC_IRQ, &li), EINVAL);
			CHECK_ERR(vmm_ioctl(ctx, VM_INJECT_NMI, &nmi), EINVAL);
			CHECK_ERR(vmm_ioctl(ctx, VM_GET_X2APIC_STATE, &x2), EINVAL);
			CHECK_ERR(vmm_ioctl(ctx, VM_SET_X2APIC_STATE, &x2), EINVAL);
			if (bad[i] != -1) { /* -1: every active vCPU */
				CHECK_ERR(vmm_ioctl(ctx, VM_LAPIC_LOCAL_IRQ, &li), EINVAL);
			}
		}
		struct vm_lapic_irq li = { .cpuid = -2, .vector = LVT_LINT0 };
		CHECK_ERR(vmm_ioctl(ctx, VM_LAPIC_LOCAL_IRQ, &li), EINVAL);
	}
	/* LVT indexes 0-6 (vCPU 0's APIC is software-enabled). */
	CHECK_ERR(vm_lapic_local_irq(v0, -1), EINVAL);
	CHECK_ERR(vm_lapic_local_irq(v0, 7), EINVAL);
	CHECK_ERR(vm_lapic_local_irq(v0, 1000), EINVAL);
	CHECK_ERR(vm_lapic_local_irq(v0, INT_MIN), EINVAL);
	{
		struct vm_lapic_irq li = { .cpuid = 0, .vector = 7 };
		CHECK_ERR(vmm_ioctl(ctx, VM_LAPIC_LOCAL_IRQ, &li), EINVAL);
	}
	/* MSI: the address must be 0xFEExxxxx. */
	CHECK_ERR(vm_lapic_msi(ctx, 0, 0x49), EINVAL);
	CHECK_ERR(vm_lapic_msi(ctx, 0xFEC00000u, 0x49), EINVAL);
	CHECK_ERR(vm_lapic_msi(ctx, 0xFED00000u, 0x49), EINVAL);
	CHECK_ERR(vm_lapic_msi(ctx, 0xFEF00000u, 0x49), EINVAL);
	CHECK_ERR(vm_lapic_msi(ctx, UINT64_MAX, 0x49), EINVAL);
	{
		struct vm_lapic_msi msi = { .msg = 0x49, .addr = 0xFED00000u };
		CHECK_ERR(vmm_ioctl(ctx, VM_LAPIC_MSI, &msi), EINVAL);
	}
	/* x2APIC state: only X2APIC_DISABLED / X2APIC_ENABLED. */
	CHECK_ERR(vm_set_x2apic_state(v0, X2APIC_STATE_LAST), EINVAL);
	CHECK_ERR(vm_set_x2apic_state(v0, -1), EINVAL);
	CHECK_ERR(vm_set_x2apic_state(v0, 1000), EINVAL);
	CHECK_ERR(vm_get_x2apic_state(v0, NULL), EFAULT);
	CHECK_ERR(vm_get_x2apic_state(NULL, NULL), EFAULT);
	{
		struct vm_x2apic x2 = { .cpuid = 0, .state = 5 };
		CHECK_ERR(vmm_ioctl(ctx, VM_SET_X2APIC_STATE, &x2), EINVAL);
	}
	CHECK_OK(vm_get_x2apic_state(v1, &state));
	CHECK(state == X2APIC_DISABLED);

	/* Kernemu: sizes 1, 2, 4, 8; only the IOAPIC and local APIC pages. */
	CHECK_ERR(vm_readwrite_kernemu_device(v0, LAPIC_GPA + 0x20, false, 4, NULL), EFAULT);
	CHECK_ERR(vm_readwrite_kernemu_device(v0, LAPIC_GPA + 0x80, true, 4, NULL), EFAULT);
	{
		const int bad[] = { 0, 3, 5, 16, -1, INT_MIN };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			CHECK_ERR(vm_readwrite_kernemu_device(v0, IOAPIC_GPA, false, bad[i], &val), EINVAL);
			CHECK_ERR(vm_readwrite_kernemu_device(v0, IOAPIC_GPA, true, bad[i], &val), EINVAL);
		}
	}
	{
		const uint64_t bad[] = { 0, 0xFEBFFFFCu, 0xFEC01000u, 0xFEE01000u, UINT64_MAX };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			val = 0x1234;
			CHECK_ERR(vm_readwrite_kernemu_device(v0, bad[i], false, 4, &val), EINVAL);
			CHECK(val == 0x1234); /* a failed read stores nothing, as libvmmapi */
			CHECK_ERR(vm_readwrite_kernemu_device(v0, bad[i], true, 4, &val), EINVAL);
		}
	}
	val = 0;
	CHECK_ERR(vm_readwrite_kernemu_device(v0, LAPIC_GPA + 0x80, true, 8, &val), EINVAL);
	CHECK_ERR(vm_readwrite_kernemu_device(v0, LAPIC_GPA + 0x80, true, 2, &val), EINVAL);
	CHECK_ERR(vm_readwrite_kernemu_device(v0, LAPIC_GPA + 0x84, true, 4, &val), EINVAL);
	CHECK_ERR(vm_readwrite_kernemu_device(v0, LAPIC_GPA + 0x88, false, 4, &val), EINVAL);
	{
		/* Widths 4-7 (16-128 bytes) go to the devices, as on FreeBSD. */
		struct vm_readwrite_kernemu_device k = { .vcpuid = 0, .access_width = 4, .gpa = IOAPIC_GPA, .value = 7 };
		CHECK_OK(vmm_ioctl(ctx, VM_GET_KERNEMU_DEV, &k));
		CHECK(k.value == 0); /* the vioapic ignores it */
		k.access_width = 7;
		CHECK_OK(vmm_ioctl(ctx, VM_SET_KERNEMU_DEV, &k));
		k.gpa = LAPIC_GPA + 0x30; /* VER: a local APIC read ignores the size */
		CHECK_OK(vmm_ioctl(ctx, VM_GET_KERNEMU_DEV, &k));
		CHECK(k.value == 0x60014);
		CHECK_ERR(vmm_ioctl(ctx, VM_SET_KERNEMU_DEV, &k), EINVAL); /* a write needs 4 */
	}
}

/* Guest installation functions. */
static void
check_guest(struct vcpu *v0)
{
	struct vmm_rs_guest_ops ops = { .next = NULL, .interrupt = guest_interrupt };
	struct vmm_rs_action good = { .kind = VMM_RS_ACT_COMPUTE };
	struct vmm_rs_action bad;

	CHECK_ERR(vmm_rs_guest_set_ops(v0, NULL, NULL), EFAULT);
	CHECK_ERR(vmm_rs_guest_set_ops(v0, &ops, NULL), EFAULT); /* ops->next NULL */
	CHECK_ERR(vmm_rs_guest_set_ops(NULL, NULL, NULL), EFAULT);
	CHECK_ERR(vmm_rs_guest_set_script(v0, NULL, 1, -1), EFAULT);
	CHECK_ERR(vmm_rs_guest_set_script(v0, &good, 1, 1), EINVAL);  /* loop_at == count */
	CHECK_ERR(vmm_rs_guest_set_script(v0, &good, 1, -2), EINVAL);
	CHECK_ERR(vmm_rs_guest_set_script(v0, &good, 1, INT_MAX), EINVAL);
	CHECK_ERR(vmm_rs_guest_set_script(v0, NULL, 0, 0), EINVAL);   /* nothing to loop to */
	bad = (struct vmm_rs_action){ .kind = 99 };
	CHECK_ERR(vmm_rs_guest_set_script(v0, &bad, 1, -1), EINVAL);
	bad = (struct vmm_rs_action){ .kind = -1 };
	CHECK_ERR(vmm_rs_guest_set_script(v0, &bad, 1, -1), EINVAL);
	bad = (struct vmm_rs_action){ .kind = VMM_RS_ACT_MMIO_READ, .size = 3, .gpa = 0xd0000000 };
	CHECK_ERR(vmm_rs_guest_set_script(v0, &bad, 1, -1), EINVAL);
	bad = (struct vmm_rs_action){ .kind = VMM_RS_ACT_MMIO_WRITE, .size = 0, .gpa = 0xd0000000 };
	CHECK_ERR(vmm_rs_guest_set_script(v0, &bad, 1, -1), EINVAL);
	bad = (struct vmm_rs_action){ .kind = VMM_RS_ACT_PORT_OUT, .size = 8, .port = 0x80 };
	CHECK_ERR(vmm_rs_guest_set_script(v0, &bad, 1, -1), EINVAL);
	CHECK_ERR(vmm_rs_guest_set_script(NULL, &good, 1, -1), EFAULT);
	CHECK_ERR(vmm_rs_guest_clear(NULL), EFAULT);
	CHECK_ERR(vmm_rs_guest_stats(v0, NULL), EFAULT);
	CHECK_ERR(vmm_rs_guest_stats(NULL, NULL), EFAULT);
}

/* Every command vmm_ioctl knows, except VM_REINIT (which takes no argument). */
static const unsigned long known_cmds[] = {
	VM_RUN, VM_SET_CAPABILITY, VM_GET_CAPABILITY, VM_SUSPEND, VM_ALLOC_MEMSEG,
	VM_GET_MEMSEG, VM_MMAP_MEMSEG, VM_MMAP_GETNEXT, VM_MUNMAP_MEMSEG,
	VM_SET_REGISTER, VM_GET_REGISTER, VM_SET_SEGMENT_DESCRIPTOR,
	VM_GET_SEGMENT_DESCRIPTOR, VM_SET_REGISTER_SET, VM_GET_REGISTER_SET,
	VM_GET_KERNEMU_DEV, VM_SET_KERNEMU_DEV, VM_GET_INTINFO, VM_SET_INTINFO,
	VM_INJECT_EXCEPTION, VM_LAPIC_IRQ, VM_INJECT_NMI, VM_IOAPIC_ASSERT_IRQ,
	VM_IOAPIC_DEASSERT_IRQ, VM_IOAPIC_PULSE_IRQ, VM_LAPIC_MSI, VM_LAPIC_LOCAL_IRQ,
	VM_IOAPIC_PINCOUNT, VM_RESTART_INSTRUCTION, VM_SET_X2APIC_STATE,
	VM_GET_X2APIC_STATE, VM_SET_TOPOLOGY, VM_GET_TOPOLOGY, VM_ISA_ASSERT_IRQ,
	VM_ISA_DEASSERT_IRQ, VM_ISA_PULSE_IRQ, VM_ISA_SET_IRQ_TRIGGER, VM_ACTIVATE_CPU,
	VM_GET_CPUS, VM_SUSPEND_CPU, VM_RESUME_CPU, VM_RTC_READ, VM_RTC_WRITE,
	VM_RTC_SETTIME, VM_RTC_GETTIME, VM_GET_HPET_CAPABILITIES, VM_STATS, VM_STAT_DESC,
	VM_GLA2GPA, VM_GLA2GPA_NOFAULT, VM_BIND_PPTDEV, VM_UNBIND_PPTDEV,
	VM_MAP_PPTDEV_MMIO, VM_UNMAP_PPTDEV_MMIO, VM_PPTDEV_MSI, VM_PPTDEV_MSIX,
	VM_PPTDEV_DISABLE_MSIX,
};

/* Commands whose argument starts with the vCPU id and that lock that vCPU. */
static const unsigned long vcpu_cmds[] = {
	VM_RUN, VM_SET_REGISTER, VM_GET_REGISTER, VM_SET_SEGMENT_DESCRIPTOR,
	VM_GET_SEGMENT_DESCRIPTOR, VM_SET_REGISTER_SET, VM_GET_REGISTER_SET,
	VM_SET_CAPABILITY, VM_GET_CAPABILITY, VM_ACTIVATE_CPU, VM_SET_INTINFO,
	VM_GET_INTINFO, VM_INJECT_EXCEPTION, VM_RESTART_INSTRUCTION,
	VM_SET_X2APIC_STATE, VM_SET_KERNEMU_DEV, VM_GET_KERNEMU_DEV, VM_GLA2GPA,
	VM_GLA2GPA_NOFAULT,
};

/* vmm_ioctl: unknown commands, NULL arguments, bad vCPU ids, bad fields. */
static void
check_ioctl(struct vmctx *ctx)
{
	uint64_t buf[64]; /* larger than any argument struct */
	const unsigned long unknown[] = {
		0, 1, 0xdeadbeef, ~0UL, ~0UL << 32 | VM_GET_TOPOLOGY,
		VM_RUN + 1,                    /* number 2 with VM_RUN's size */
		0xc02076c8,                    /* _IOWR('v', 200, 32 bytes) */
		0x40107640,                    /* VM_GET_TOPOLOGY's number, 16 bytes */
		0xc0107614,                    /* VM_SET_REGISTER's number as _IOWR */
		0xc0107815,                    /* VM_GET_REGISTER's number, group 'x' */
		/* FreeBSD commands not implemented (README: "Not yet there"). */
		VM_GET_GPA_PMAP, VM_RESTORE_TIME,
	};

	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		memset(buf, 0, sizeof(buf));
		CHECK_ERR(vmm_ioctl(ctx, unknown[i], buf), ENOTTY);
	}
	for (size_t i = 0; i < sizeof(known_cmds) / sizeof(known_cmds[0]); i++)
		CHECK_ERR(vmm_ioctl(ctx, known_cmds[i], NULL), EFAULT);
	/* PCI pass-through: no device is attached to ppt here. */
	{
		const unsigned long ppt[] = { VM_BIND_PPTDEV, VM_UNBIND_PPTDEV, VM_MAP_PPTDEV_MMIO,
			VM_UNMAP_PPTDEV_MMIO, VM_PPTDEV_MSI, VM_PPTDEV_MSIX, VM_PPTDEV_DISABLE_MSIX };
		for (size_t i = 0; i < sizeof(ppt) / sizeof(ppt[0]); i++) {
			memset(buf, 0, sizeof(buf));
			CHECK_ERR(vmm_ioctl(ctx, ppt[i], buf), ENOENT);
		}
		check_pptdev_calls(ctx, ENOENT, ENOTTY);
	}
	CHECK_ERR(vmm_ioctl(NULL, VM_GET_TOPOLOGY, NULL), EFAULT);
	CHECK_ERR(vmm_ioctl(NULL, 0xdeadbeef, buf), EFAULT);
	/* VM_REINIT takes no argument; with active, unsuspended vCPUs: EBUSY. */
	CHECK_ERR(vmm_ioctl(ctx, VM_REINIT, NULL), EBUSY);

	/* vCPU ids out of range. */
	{
		const int bad[] = { -1, 16, 1000, INT_MIN, INT_MAX };
		for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
			for (size_t i = 0; i < sizeof(vcpu_cmds) / sizeof(vcpu_cmds[0]); i++) {
				memset(buf, 0, sizeof(buf));
				memcpy(buf, &bad[b], sizeof(int));
				CHECK_ERR(vmm_ioctl(ctx, vcpu_cmds[i], buf), EINVAL);
			}
			if (bad[b] != -1) { /* -1: every vCPU */
				struct vm_activate_cpu ac = { .vcpuid = bad[b] };
				CHECK_ERR(vmm_ioctl(ctx, VM_SUSPEND_CPU, &ac), EINVAL);
				CHECK_ERR(vmm_ioctl(ctx, VM_RESUME_CPU, &ac), EINVAL);
			}
		}
	}

	/* Bad fields inside valid argument structs. */
	{
		struct vm_run run = { .cpuid = 0, .vm_exit = NULL };
		CHECK_ERR(vmm_ioctl(ctx, VM_RUN, &run), EFAULT);
	}
	{
		int regnums[VM_REG_LAST + 1];
		uint64_t regvals[VM_REG_LAST + 1] = { 0 };
		for (int i = 0; i <= VM_REG_LAST; i++)
			regnums[i] = i % VM_REG_LAST;
		struct vm_register_set rs = { .cpuid = 0, .count = 2, .regnums = NULL, .regvals = regvals };
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_REGISTER_SET, &rs), EFAULT);
		rs.regnums = regnums;
		rs.regvals = NULL;
		CHECK_ERR(vmm_ioctl(ctx, VM_SET_REGISTER_SET, &rs), EFAULT);
		/* A get reads the numbers first, as FreeBSD: a bad one is EINVAL
		 * before the missing value array is noticed. */
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_REGISTER_SET, &rs), EFAULT);
		regnums[1] = VM_REG_LAST;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_REGISTER_SET, &rs), EINVAL);
		regnums[1] = 1;
		rs.regvals = regvals;
		rs.count = VM_REG_LAST + 1;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_REGISTER_SET, &rs), EINVAL);
		rs.count = UINT_MAX;
		CHECK_ERR(vmm_ioctl(ctx, VM_SET_REGISTER_SET, &rs), EINVAL);
	}
	{
		struct vm_register reg = { .cpuid = 0, .regnum = VM_REG_LAST };
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_REGISTER, &reg), EINVAL);
		struct vm_seg_desc sd = { .cpuid = 0, .regnum = VM_REG_GUEST_RAX };
		CHECK_ERR(vmm_ioctl(ctx, VM_SET_SEGMENT_DESCRIPTOR, &sd), EINVAL);
		struct vm_capability cap = { .cpuid = 0, .captype = VM_CAP_MAX };
		CHECK_ERR(vmm_ioctl(ctx, VM_SET_CAPABILITY, &cap), EINVAL);
		struct vm_exception exc = { .cpuid = 0, .vector = 32 };
		CHECK_ERR(vmm_ioctl(ctx, VM_INJECT_EXCEPTION, &exc), EINVAL);
		struct vm_activate_cpu ac = { .vcpuid = 0 };
		CHECK_ERR(vmm_ioctl(ctx, VM_ACTIVATE_CPU, &ac), EBUSY);
	}
	{
		cpuset_t set;
		struct vm_cpuset cs = { .which = 3, .cpusetsize = sizeof(set), .cpus = &set };
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), EINVAL);
		cs.which = -1;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), EINVAL);
		cs.which = VM_ACTIVE_CPUS;
		cs.cpusetsize = -1;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), ERANGE);
		cs.cpusetsize = 0;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), ERANGE);
		cs.cpusetsize = CPU_MAXSIZE / 8 + 1;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), ERANGE);
		cs.which = 3; /* the size is checked first, as FreeBSD */
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), ERANGE);
		cs.which = VM_ACTIVE_CPUS;
		cs.cpusetsize = sizeof(set);
		cs.cpus = NULL;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_CPUS, &cs), EFAULT);
	}
	{
		struct vm_memseg seg = { .segid = 2, .len = MB };
		memset(seg.name, 'x', sizeof(seg.name)); /* no NUL */
		CHECK_ERR(vmm_ioctl(ctx, VM_ALLOC_MEMSEG, &seg), ENAMETOOLONG);
		seg.segid = -1;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_MEMSEG, &seg), EINVAL);
		seg.segid = 1000;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_MEMSEG, &seg), EINVAL);
		struct vm_memmap mm = { .gpa = 0xfffff000 };
		CHECK_ERR(vmm_ioctl(ctx, VM_MMAP_GETNEXT, &mm), ENOENT);
	}
	{
		struct vm_suspend sus = { .how = VM_SUSPEND_NONE };
		CHECK_ERR(vmm_ioctl(ctx, VM_SUSPEND, &sus), EINVAL);
		sus.how = VM_SUSPEND_LAST;
		CHECK_ERR(vmm_ioctl(ctx, VM_SUSPEND, &sus), EINVAL);
		struct vm_cpu_topology topo = { 4, 4, 4, 0 };
		CHECK_ERR(vmm_ioctl(ctx, VM_SET_TOPOLOGY, &topo), EINVAL);
	}
}

/* Registers, descriptors, capabilities, intinfo, exceptions, cpusets. */
static void
check_vcpu_state_calls(struct vmctx *ctx, struct vcpu *v0, struct vcpu *v1, struct vcpu *v2)
{
	uint64_t val = 0, base, i1, i2;
	uint32_t limit, access;
	int cap;
	struct seg_desc sd;
	cpuset_t set;
	const int bad_regs[] = { -1, VM_REG_LAST, 1000, INT_MIN, INT_MAX };

	for (size_t i = 0; i < sizeof(bad_regs) / sizeof(bad_regs[0]); i++) {
		int r = bad_regs[i];
		CHECK_ERR(vm_set_register(v0, r, 1), EINVAL);
		CHECK_ERR(vm_get_register(v0, r, &val), EINVAL);
		CHECK_ERR(vm_set_desc(v0, r, 0, 0, 0), EINVAL);
		CHECK_ERR(vm_get_desc(v0, r, &base, &limit, &access), EINVAL);
		CHECK_ERR(vm_get_seg_desc(v0, r, &sd), EINVAL);
	}
	/* Descriptors only for segment and descriptor-table registers. */
	CHECK_ERR(vm_set_desc(v0, VM_REG_GUEST_RIP, 0, 0, 0), EINVAL);
	CHECK_ERR(vm_get_desc(v0, VM_REG_GUEST_CR0, &base, &limit, &access), EINVAL);
	CHECK_ERR(vm_get_seg_desc(v0, VM_REG_GUEST_EFER, &sd), EINVAL);
	{
		/* As libvmmapi's vm_get_desc: nothing is written after a failure. */
		struct seg_desc keep = { .base = 0x1234, .limit = 0x56, .access = 0x78 };
		CHECK_ERR(vm_get_seg_desc(v0, VM_REG_GUEST_EFER, &keep), EINVAL);
		CHECK(keep.base == 0x1234 && keep.limit == 0x56 && keep.access == 0x78);
	}
	CHECK_ERR(vm_get_register(v0, VM_REG_GUEST_RAX, NULL), EFAULT);
	CHECK_ERR(vm_get_desc(v0, VM_REG_GUEST_CS, NULL, &limit, &access), EFAULT);
	CHECK_ERR(vm_get_desc(v0, VM_REG_GUEST_CS, &base, NULL, &access), EFAULT);
	CHECK_ERR(vm_get_desc(v0, VM_REG_GUEST_CS, &base, &limit, NULL), EFAULT);
	CHECK_ERR(vm_get_seg_desc(v0, VM_REG_GUEST_CS, NULL), EFAULT);
	CHECK_ERR(vm_get_register(NULL, VM_REG_GUEST_RAX, NULL), EFAULT);

	/* Register sets. */
	{
		int regnums[VM_REG_LAST + 1];
		uint64_t regvals[VM_REG_LAST + 1] = { 0 };
		for (int i = 0; i <= VM_REG_LAST; i++)
			regnums[i] = i % VM_REG_LAST;
		CHECK_ERR(vm_set_register_set(v0, 2, NULL, regvals), EFAULT);
		CHECK_ERR(vm_get_register_set(v0, 2, NULL, regvals), EFAULT);
		CHECK_ERR(vm_set_register_set(v0, 2, regnums, NULL), EFAULT);
		CHECK_ERR(vm_get_register_set(v0, 2, regnums, NULL), EFAULT);
		/* More registers than there are (FreeBSD: count > VM_REG_LAST). */
		CHECK_ERR(vm_set_register_set(v0, VM_REG_LAST + 1, regnums, regvals), EINVAL);
		CHECK_ERR(vm_get_register_set(v0, VM_REG_LAST + 1, regnums, regvals), EINVAL);
		CHECK_ERR(vm_get_register_set(v0, UINT_MAX, regnums, regvals), EINVAL);
		/* An unknown register in the list (reads only: writes stop there). */
		int mixed[2] = { VM_REG_GUEST_RAX, 1000 };
		regvals[0] = 0xaaaa;
		CHECK_ERR(vm_get_register_set(v0, 2, mixed, regvals), EINVAL);
		CHECK(regvals[0] == 0xaaaa); /* nothing written on failure */
		/* The count is checked before the arrays, as FreeBSD. */
		CHECK_ERR(vm_get_register_set(v0, VM_REG_LAST + 1, NULL, NULL), EINVAL);
		mixed[0] = -1;
		CHECK_ERR(vm_set_register_set(v0, 1, mixed, regvals), EINVAL);
	}

	/* Capabilities. */
	{
		const int bad[] = { -1, VM_CAP_MAX, 1000, INT_MIN };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			CHECK_ERR(vm_set_capability(v0, bad[i], 1), EINVAL);
			CHECK_ERR(vm_get_capability(v0, bad[i], &cap), EINVAL);
		}
		CHECK_ERR(vm_get_capability(v0, VM_CAP_HALT_EXIT, NULL), EFAULT);
	}

	/* Intinfo and exceptions. */
	CHECK_ERR(vm_get_intinfo(v0, NULL, &i2), EFAULT);
	CHECK_ERR(vm_get_intinfo(v0, &i1, NULL), EFAULT);
	CHECK_ERR(vm_set_intinfo(v0, VM_INTINFO_VALID | VM_INTINFO_NMI | 3), EINVAL);
	CHECK_ERR(vm_set_intinfo(v0, VM_INTINFO_VALID | VM_INTINFO_HWEXCEPTION | 40), EINVAL);
	CHECK_ERR(vm_set_intinfo(v0, VM_INTINFO_VALID | VM_INTINFO_RSVD | 14), EINVAL);
	{
		const int bad[] = { -1, 32, 255, 1000, INT_MIN };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			CHECK_ERR(vm_inject_exception(v0, bad[i], 0, 0, 0), EINVAL);
	}
	/* #DF only ever results from nested faults (FreeBSD 14: EINVAL). */
	CHECK_ERR(vm_inject_exception(v0, 8, 1, 0, 0), EINVAL);
	CHECK_OK(vm_inject_exception(v1, 13, 1, 0, 0));
	CHECK_ERR(vm_inject_exception(v1, 6, 0, 0, 0), EBUSY); /* one already pending */

	/* VM_RUN: the exit pointer is checked before the guest runs. */
	{
		struct vm_exit vme;
		struct vm_run run = { .vm_exit = NULL };
		CHECK_ERR(vm_run(v0, NULL), EFAULT);
		CHECK_ERR(vm_run(v0, &run), EFAULT);
		run.vm_exit = &vme;
		CHECK_ERR(vm_run(v2, &run), EINVAL); /* not active */
		CHECK_ERR(vm_run(NULL, &run), EFAULT);
	}

	/* Activation and the cpusets. */
	CHECK_ERR(vm_activate_cpu(v0), EBUSY);
	CHECK_ERR(vm_suspend_cpu(v2), EINVAL); /* not active */
	CHECK_ERR(vm_resume_cpu(v0), EINVAL);  /* not in the debug set */
	CHECK_ERR(vm_resume_cpu(v2), EINVAL);
	CHECK_ERR(vm_active_cpus(ctx, NULL), EFAULT);
	CHECK_ERR(vm_suspended_cpus(ctx, NULL), EFAULT);
	CHECK_ERR(vm_debug_cpus(ctx, NULL), EFAULT);
	CHECK_ERR(vm_active_cpus(NULL, &set), EFAULT);

	/* Whole-VM calls. */
	CHECK_ERR(vm_suspend(ctx, VM_SUSPEND_NONE), EINVAL);
	CHECK_ERR(vm_suspend(ctx, VM_SUSPEND_LAST), EINVAL);
	CHECK_ERR(vm_suspend(ctx, -1), EINVAL);
	CHECK_ERR(vm_suspend(ctx, INT_MAX), EINVAL);
	CHECK_ERR(vm_reinit(ctx), EBUSY); /* active vCPUs, no suspend */
	CHECK_ERR(vm_reinit(NULL), EFAULT);
}

/* Topology. */
static void
check_topology(struct vmctx *ctx)
{
	uint16_t s, c, t, m;

	CHECK_ERR(vm_set_topology(ctx, 17, 1, 1, 0), EINVAL);
	CHECK_ERR(vm_set_topology(ctx, 4, 4, 4, 16), EINVAL); /* maxcpus is ignored */
	CHECK_ERR(vm_set_topology(ctx, 0xffff, 0xffff, 0xffff, 0), EINVAL);
	CHECK_ERR(vm_get_topology(ctx, NULL, &c, &t, &m), EFAULT);
	CHECK_ERR(vm_get_topology(ctx, &s, NULL, &t, &m), EFAULT);
	CHECK_ERR(vm_get_topology(ctx, &s, &c, NULL, &m), EFAULT);
	CHECK_ERR(vm_get_topology(ctx, &s, &c, &t, NULL), EFAULT);
	CHECK_OK(vm_get_topology(ctx, &s, &c, &t, &m));
	CHECK(s == 1 && c == 2 && t == 2 && m == 16);
	/* Products that wrap in 32 bits: 2^32, and 2^32 + 4. */
	CHECK_ERR(vm_set_topology(ctx, 2048, 2048, 1024, 0), EINVAL);
	CHECK_ERR(vm_set_topology(ctx, 2, 33025, 65026, 0), EINVAL);
	CHECK_OK(vm_get_topology(ctx, &s, &c, &t, &m));
	CHECK(s == 1 && c == 2 && t == 2 && m == 16);
}

/* Memory calls on a VM with 4 MiB of RAM at 0 and a "rom" segment. */
static void
check_memory(struct vmctx *ctx)
{
	size_t len;
	char name[VM_MAX_SUFFIXLEN + 1];
	vm_paddr_t gpa;
	vm_ooffset_t segoff;
	int segid, prot, flags;

	/* Segments. */
	CHECK_ERR(vm_alloc_memseg(ctx, -1, MB, NULL), EINVAL);
	CHECK_ERR(vm_alloc_memseg(ctx, 1000, MB, NULL), EINVAL);
	CHECK_ERR(vm_alloc_memseg(ctx, INT_MIN, MB, "x"), EINVAL);
	CHECK_ERR(vm_alloc_memseg(ctx, 2, 0, NULL), EINVAL);
	CHECK_ERR(vm_alloc_memseg(ctx, 2, 4097, NULL), EINVAL);
	CHECK_ERR(vm_alloc_memseg(ctx, 2, SIZE_MAX & ~(size_t)4095, NULL), ENOMEM);
	CHECK_ERR(vm_alloc_memseg(ctx, 2, MB, "sixteen-chars-xx"), ENAMETOOLONG);
	CHECK_ERR(vm_alloc_memseg(ctx, VM_SYSMEM, 8 * MB, NULL), EINVAL); /* exists, other size */
	CHECK_ERR(vm_alloc_memseg(ctx, VM_SYSMEM, 4 * MB, "rom"), EINVAL); /* exists, other name */
	CHECK_OK(vm_alloc_memseg(ctx, VM_SYSMEM, 4 * MB, NULL));            /* the same: success */
	CHECK_ERR(vm_alloc_memseg(ctx, 1, MB, "bios"), EINVAL);
	CHECK_ERR(vm_alloc_memseg(ctx, 1, 2 * MB, "rom"), EINVAL);
	CHECK_ERR(vm_alloc_memseg(NULL, 2, MB, NULL), EFAULT);
	CHECK_OK(vm_get_memseg(ctx, 2, &len, NULL, 0));
	CHECK(len == 0); /* none of the above allocated it */
	CHECK_ERR(vm_get_memseg(ctx, 0, NULL, NULL, 0), EFAULT);
	CHECK_ERR(vm_get_memseg(ctx, -1, &len, NULL, 0), EINVAL);
	CHECK_ERR(vm_get_memseg(ctx, 1000, &len, NULL, 0), EINVAL);
	strcpy(name, "junk");
	CHECK_ERR(vm_get_memseg(ctx, 1, &len, name, 3), ENAMETOOLONG); /* "rom" + NUL */
	CHECK(strcmp(name, "ro") == 0); /* truncated, as strlcpy */
	CHECK_ERR(vm_get_memseg(ctx, 1, &len, name, 0), ENAMETOOLONG);
	CHECK(strcmp(name, "ro") == 0); /* no room: nothing written, as strlcpy */
	{
		/* VM_GET_MEMSEG leaves the name alone for an unallocated segment. */
		struct vm_memseg ms = { .segid = 2, .name = "junk" };
		CHECK_OK(vmm_ioctl(ctx, VM_GET_MEMSEG, &ms));
		CHECK(ms.len == 0 && strcmp(ms.name, "junk") == 0);
	}
	CHECK_OK(vm_get_memseg(ctx, 1, &len, name, 4));
	CHECK(len == MB && strcmp(name, "rom") == 0);

	/* Maps. */
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000001, 1, 0, MB, PROT_READ), EINVAL); /* gpa */
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1, 1, MB, PROT_READ), EINVAL); /* segoff */
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1, -MB, MB, PROT_READ), EINVAL); /* negative */
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1, 0, 0, PROT_READ), EINVAL);  /* len */
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1, 0, 4097, PROT_READ), EINVAL);
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1, 4096, MB, PROT_READ), EINVAL); /* past the end */
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1, UINT64_MAX & ~4095ULL, 8192, PROT_READ), EINVAL);
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1, 0, MB, 0), EINVAL);         /* prot */
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1, 0, MB, 8), EINVAL);
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 2, 0, MB, PROT_READ), EINVAL); /* unallocated */
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, -1, 0, MB, PROT_READ), EINVAL);
	CHECK_ERR(vm_mmap_memseg(ctx, 0x10000000, 1000, 0, MB, PROT_READ), EINVAL);
	CHECK_ERR(vm_mmap_memseg(ctx, UINT64_MAX & ~4095ULL, 1, 0, 8192, PROT_READ), EFAULT);
	CHECK_ERR(vm_mmap_memseg(ctx, 0, VM_SYSMEM, MB, MB, PROT_READ), EEXIST); /* another map at 0 */
	/* libvmmapi compares with the map at gpa before the kernel sees the offset. */
	CHECK_ERR(vm_mmap_memseg(ctx, 0, VM_SYSMEM, -MB, MB, PROT_READ), EEXIST);
	CHECK_ERR(vm_mmap_memseg(ctx, MB, VM_SYSMEM, 0, MB, PROT_READ), EFAULT); /* overlaps it */
	CHECK_OK(vm_mmap_memseg(ctx, 0, VM_SYSMEM, 0, 4 * MB, PROT_ALL));       /* the same: success */
	CHECK_ERR(vm_mmap_memseg(NULL, 0x10000000, 1, 0, MB, PROT_READ), EFAULT);
	{
		/* A wired map is not "the same" as the unwired one libvmmapi asks for. */
		struct vm_memmap mm = { .gpa = 0x20000000, .segid = 1, .segoff = 0, .len = MB,
		    .prot = PROT_READ, .flags = VM_MEMMAP_F_WIRED };
		CHECK_OK(vmm_ioctl(ctx, VM_MMAP_MEMSEG, &mm));
		CHECK_ERR(vm_mmap_memseg(ctx, 0x20000000, 1, 0, MB, PROT_READ), EEXIST);
		CHECK_OK(vm_munmap_memseg(ctx, 0x20000000, MB));
	}
	{
		/* VM_MAX_MEMMAPS (8) maps at most: then ENOSPC, as FreeBSD. */
		int maps = 0;
		while (maps < 8 && vm_mmap_memseg(ctx, 0x20000000 + maps * MB, 1, 0, MB, PROT_READ) == 0)
			maps++;
		CHECK(maps > 0 && maps < 8); /* the map at 0 holds one */
		CHECK_ERR(vm_mmap_memseg(ctx, 0x20000000 + maps * MB, 1, 0, MB, PROT_READ), ENOSPC);
		for (int i = 0; i < maps; i++)
			CHECK_OK(vm_munmap_memseg(ctx, 0x20000000 + i * MB, MB));
	}
	CHECK_ERR(vm_munmap_memseg(ctx, 0, MB), EINVAL);            /* part of a map */
	CHECK_ERR(vm_munmap_memseg(ctx, 0, SIZE_MAX), EINVAL);
	CHECK_ERR(vm_munmap_memseg(ctx, 0x10000000, MB), EINVAL);   /* no map there */
	CHECK_ERR(vm_munmap_memseg(ctx, 0x1001, 4096), EINVAL);
	CHECK_ERR(vm_munmap_memseg(ctx, UINT64_MAX & ~4095ULL, 8192), EINVAL);
	CHECK_ERR(vm_munmap_memseg(NULL, 0, 4 * MB), EFAULT);
	gpa = 0;
	CHECK_ERR(vm_mmap_getnext(ctx, NULL, &segid, &segoff, &len, &prot, &flags), EFAULT);
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, NULL, &segoff, &len, &prot, &flags), EFAULT);
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, NULL, &len, &prot, &flags), EFAULT);
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, NULL, &prot, &flags), EFAULT);
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, NULL, &flags), EFAULT);
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, NULL), EFAULT);
	CHECK_ERR(vm_mmap_getnext(NULL, NULL, NULL, NULL, NULL, NULL, NULL), EFAULT);
	gpa = 0xfff00001; /* above the last map's start */
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, &flags), ENOENT);
	gpa = UINT64_MAX;
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, &flags), ENOENT);

	/* vm_setup_memory: only VM_MMAP_ALL, and the size already set up. */
	CHECK_ERR(vm_setup_memory(ctx, 4 * MB, VM_MMAP_NONE), EINVAL);
	CHECK_ERR(vm_setup_memory(ctx, 4 * MB, VM_MMAP_SPARSE), EINVAL);
	CHECK_ERR(vm_setup_memory(ctx, 4 * MB, -1), EINVAL);
	CHECK_ERR(vm_setup_memory(ctx, 4 * MB, INT_MAX), EINVAL);
	CHECK(vm_get_lowmem_size(ctx) == 4 * MB);
	CHECK_ERR(vm_setup_memory(ctx, 8 * MB, VM_MMAP_ALL), EINVAL);
	CHECK_ERR(vm_setup_memory(ctx, 0, VM_MMAP_ALL), EINVAL);
	CHECK_ERR(vm_setup_memory(ctx, 4 * MB + 1, VM_MMAP_ALL), EINVAL);
	CHECK_ERR(vm_setup_memory(ctx, SIZE_MAX, VM_MMAP_ALL), EINVAL);
	CHECK_ERR(vm_setup_memory(NULL, 4 * MB, VM_MMAP_ALL), EFAULT);
	/*
	 * As libvmmapi, a failed vm_setup_memory has already recorded the
	 * lowmem/highmem sizes it was asked for (vm_get_lowmem_size reads
	 * 3 GiB after the SIZE_MAX call); the same call as the first one puts
	 * them back, with the segment, maps and contents untouched.
	 */
	CHECK_OK(vm_setup_memory(ctx, 4 * MB, VM_MMAP_ALL));

	/* vm_map_gpa: NULL outside guest RAM. */
	CHECK(vm_map_gpa(ctx, 4 * MB, 1) == NULL);
	CHECK(vm_map_gpa(ctx, 4 * MB - 1, 2) == NULL);
	CHECK(vm_map_gpa(ctx, 0, 4 * MB + 1) == NULL);
	CHECK(vm_map_gpa(ctx, 1, SIZE_MAX) == NULL);
	CHECK(vm_map_gpa(ctx, UINT64_MAX, 1) == NULL);
	CHECK(vm_map_gpa(ctx, 0xfff00000, 4096) == NULL); /* the rom segment is not RAM */
	CHECK(vm_map_gpa(ctx, VM_HIGHMEM_BASE, 4096) == NULL);
	CHECK(vm_map_gpa(NULL, 0, 4096) == NULL);
}

/* vm_get_lowmem_limit / vm_set_lowmem_limit (libvmmapi semantics). */
static void
check_lowmem_limit(void)
{
	struct vmctx *ctx;
	size_t len;
	vm_paddr_t gpa;
	vm_ooffset_t segoff;
	int segid, prot, flags;
	volatile uint8_t *lo, *hi;

	CHECK_OK(vm_create("lowmem"));
	ctx = vm_open("lowmem");
	CHECK(ctx != NULL);
	CHECK(vm_get_lowmem_limit(ctx) == VM_LOWMEM_LIMIT); /* 3 GiB */
	vm_set_lowmem_limit(ctx, 2 * MB);
	CHECK(vm_get_lowmem_limit(ctx) == 2 * MB);
	CHECK(vm_get_lowmem_size(ctx) == 0 && vm_get_highmem_size(ctx) == 0);

	/* 6 MiB with a 2 MiB limit: 2 MiB at 0, the other 4 MiB at 4 GiB. */
	CHECK_OK(vm_setup_memory(ctx, 6 * MB, VM_MMAP_ALL));
	CHECK(vm_get_lowmem_size(ctx) == 2 * MB);
	CHECK(vm_get_highmem_size(ctx) == 4 * MB);
	CHECK_OK(vm_get_memseg(ctx, VM_SYSMEM, &len, NULL, 0));
	CHECK(len == VM_HIGHMEM_BASE + 4 * MB); /* segment offset = guest address */
	gpa = 0;
	CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, &flags));
	CHECK(gpa == 0 && segid == VM_SYSMEM && segoff == 0 && len == 2 * MB && prot == PROT_ALL);
	gpa = 1;
	CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, &flags));
	CHECK(gpa == VM_HIGHMEM_BASE && segid == VM_SYSMEM && segoff == VM_HIGHMEM_BASE &&
	    len == 4 * MB && prot == PROT_ALL);
	gpa++;
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, &flags), ENOENT);
	lo = vm_map_gpa(ctx, 0, 2 * MB);
	hi = vm_map_gpa(ctx, VM_HIGHMEM_BASE, 4 * MB);
	CHECK(lo != NULL && hi != NULL);
	CHECK(hi == lo + VM_HIGHMEM_BASE);
	CHECK(vm_map_gpa(ctx, 2 * MB, 4096) == NULL);         /* above the limit: a hole */
	CHECK(vm_map_gpa(ctx, 2 * MB - 4096, 8192) == NULL);  /* straddles the limit */
	CHECK(vm_map_gpa(ctx, VM_HIGHMEM_BASE + 4 * MB - 4096, 4096) != NULL);
	CHECK(vm_map_gpa(ctx, VM_HIGHMEM_BASE + 4 * MB, 1) == NULL);
	if (lo != NULL && hi != NULL) {
		volatile uint8_t *end = vm_map_gpa(ctx, VM_HIGHMEM_BASE + 4 * MB - 1, 1);
		lo[0] = 0x11;
		hi[0] = 0x22;
		if (end != NULL)
			*end = 0x33;
		CHECK(lo[0] == 0x11 && hi[0] == 0x22 && hi[4 * MB - 1] == 0x33);
	}

	/* The limit is for a later vm_setup_memory: the layout stays. */
	vm_set_lowmem_limit(ctx, MB);
	CHECK(vm_get_lowmem_limit(ctx) == MB);
	CHECK(vm_get_lowmem_size(ctx) == 2 * MB && vm_get_highmem_size(ctx) == 4 * MB);
	CHECK(vm_map_gpa(ctx, MB, 4096) != NULL);
	vm_set_lowmem_limit(ctx, UINT32_MAX); /* the whole uint32_t range */
	CHECK(vm_get_lowmem_limit(ctx) == UINT32_MAX);
	vm_set_lowmem_limit(ctx, 0);
	CHECK(vm_get_lowmem_limit(ctx) == 0);
	vm_destroy(ctx);

	/* Exactly at the limit: all of it is lowmem. */
	CHECK_OK(vm_create("lowmem2"));
	ctx = vm_open("lowmem2");
	vm_set_lowmem_limit(ctx, 4 * MB);
	CHECK_OK(vm_setup_memory(ctx, 4 * MB, VM_MMAP_ALL));
	CHECK(vm_get_lowmem_size(ctx) == 4 * MB && vm_get_highmem_size(ctx) == 0);
	CHECK_OK(vm_get_memseg(ctx, VM_SYSMEM, &len, NULL, 0));
	CHECK(len == 4 * MB);
	CHECK(vm_map_gpa(ctx, 4 * MB - 4096, 4096) != NULL);
	vm_destroy(ctx);

	/* Bad handles read 0 and are ignored. */
	CHECK(vm_get_lowmem_limit(NULL) == 0);
	vm_set_lowmem_limit(NULL, MB);
}

/* vm_lapic_local_irq (FreeBSD vlapic_trigger_lvt), on vCPUs 0-2 of `ctx`. */
static void
check_lapic_local_irq(struct vmctx *ctx, struct vcpu *v0, struct vcpu *v1, struct vcpu *v2)
{
	/* A masked LVT entry (the reset value) fires nothing. */
	CHECK((kread(v0, LAPIC_GPA + LAPIC_LVT_LINT0) & LVT_MASKED) != 0);
	CHECK_OK(vm_lapic_local_irq(v0, LVT_LINT0));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x33) == 0);
	/* Fixed-mode entries set their vector in IRR. */
	kwrite(v0, LAPIC_GPA + LAPIC_LVT_LINT0, 0x33);
	CHECK_OK(vm_lapic_local_irq(v0, LVT_LINT0));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x33) == 1);
	kwrite(v0, LAPIC_GPA + LAPIC_LVT_TIMER, 0x34);
	CHECK_OK(vm_lapic_local_irq(v0, LVT_TIMER));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x34) == 1);
	kwrite(v0, LAPIC_GPA + LAPIC_LVT_CMCI, 0x38);
	CHECK_OK(vm_lapic_local_irq(v0, LVT_CMCI));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x38) == 1);
	kwrite(v0, LAPIC_GPA + LAPIC_LVT_THERMAL, LVT_MASKED | 0x37);
	CHECK_OK(vm_lapic_local_irq(v0, LVT_THERMAL));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x37) == 0);
	/* An illegal vector (< 16) raises the error LVT instead. */
	kwrite(v0, LAPIC_GPA + LAPIC_LVT_ERROR, 0x36);
	kwrite(v0, LAPIC_GPA + LAPIC_LVT_PERF, 0x05);
	CHECK_OK(vm_lapic_local_irq(v0, LVT_PMC));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x36) == 1);
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x05) == 0);
	kwrite(v0, LAPIC_GPA + LAPIC_ESR, 0); /* latch the error status */
	CHECK((kread(v0, LAPIC_GPA + LAPIC_ESR) & 0x20) != 0); /* send illegal vector */
	/* NMI delivery mode. */
	kwrite(v0, LAPIC_GPA + LAPIC_LVT_LINT1, LVT_DM_NMI);
	CHECK_OK(vm_lapic_local_irq(v0, LVT_LINT1));
	/* The ioctl face, same thing. */
	{
		struct vm_lapic_irq li = { .cpuid = 0, .vector = LVT_LINT0 };
		kwrite(v0, LAPIC_GPA + LAPIC_LVT_LINT0, 0x3a);
		CHECK_OK(vmm_ioctl(ctx, VM_LAPIC_LOCAL_IRQ, &li));
		CHECK(lapic_bit(v0, LAPIC_IRR, 0x3a) == 1);
	}

	/*
	 * A software-disabled APIC (vCPU 1's, at reset): LINT0 and LINT1 are
	 * the INTR and NMI pins and every other index is accepted and ignored,
	 * as in FreeBSD (vlapic_trigger_lvt returns 0 when the APIC is
	 * disabled) -- even 7, which an enabled APIC rejects with EINVAL. The
	 * header says only "an LVT index, 0-6".
	 */
	CHECK_OK(vm_lapic_local_irq(v1, LVT_LINT0));
	CHECK_OK(vm_lapic_local_irq(v1, LVT_LINT1));
	CHECK_OK(vm_lapic_local_irq(v1, LVT_TIMER));
	CHECK_OK(vm_lapic_local_irq(v1, 7));

	/* cpuid -1 in VM_LAPIC_LOCAL_IRQ: every active vCPU (0 and 1, not 2). */
	lapic_enable(v1);
	lapic_enable(v2);
	kwrite(v0, LAPIC_GPA + LAPIC_LVT_LINT0, 0x3b);
	kwrite(v1, LAPIC_GPA + LAPIC_LVT_LINT0, 0x3b);
	kwrite(v2, LAPIC_GPA + LAPIC_LVT_LINT0, 0x3b);
	{
		struct vm_lapic_irq li = { .cpuid = -1, .vector = LVT_LINT0 };
		CHECK_OK(vmm_ioctl(ctx, VM_LAPIC_LOCAL_IRQ, &li));
	}
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x3b) == 1);
	CHECK(lapic_bit(v1, LAPIC_IRR, 0x3b) == 1);
	CHECK(lapic_bit(v2, LAPIC_IRR, 0x3b) == 0);
	CHECK_OK(vm_lapic_local_irq(v2, LVT_LINT0)); /* an inactive vCPU's APIC works too */
	CHECK(lapic_bit(v2, LAPIC_IRR, 0x3b) == 1);
	CHECK_ERR(vm_lapic_local_irq(v1, 7), EINVAL); /* enabled now */
	CHECK_ERR(vm_lapic_local_irq(NULL, LVT_LINT0), EFAULT);
}

int
main(void)
{
	struct vmctx *ctx, *closed, *va, *vb, *r1, *r2, *r3;
	struct vcpu *v0, *v1, *v2, *vc, *vv;
	volatile uint8_t *mem;
	uint64_t val;
	uint32_t limit, access;
	uint16_t s, c, t, m;
	size_t len;
	cpuset_t set;
	int x;
	enum x2apic_state x2;

	watchdog_start(60, "api_misuse_test");
	/*
	 * (void *)-1 (MAP_FAILED, a common "no VM") is not a handle either,
	 * first thing on a thread whose handle cache is empty: the empty
	 * cache's marker was that value, so it hit, with a NULL VM.
	 */
	check_bad_ctx((struct vmctx *)(uintptr_t)-1, EBADF, "(void *)-1");
	check_bad_vcpu((struct vcpu *)(uintptr_t)-1, EBADF, "(void *)-1", -1);
	check_global();

	/* The VM that takes every bad call, with some state to keep. */
	CHECK_OK(vm_create("misuse"));
	CHECK_ERR(vm_create("misuse"), EEXIST);
	ctx = vm_open("misuse");
	v0 = vm_vcpu_open(ctx, 0);
	v1 = vm_vcpu_open(ctx, 1);
	v2 = vm_vcpu_open(ctx, 2); /* never activated */
	CHECK(ctx != NULL && v0 != NULL && v1 != NULL && v2 != NULL);
	CHECK_OK(vm_get_topology(ctx, &s, &c, &t, &m));
	CHECK(m == 16); /* the bad vmm_rs_set_maxcpus calls changed nothing */
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_activate_cpu(v1));
	lapic_enable(v0);
	rte_write(v0, 9, 0x49, 0); /* pin 9: edge, vector 0x49, to vCPU 0 */
	CHECK_OK(vm_set_topology(ctx, 1, 2, 2, 0));
	CHECK_OK(vm_set_register(v0, VM_REG_GUEST_RAX, 0x1111));
	CHECK_OK(vm_set_register(v0, VM_REG_GUEST_RIP, 0xfff0));
	CHECK_OK(vm_set_register(v1, VM_REG_GUEST_RBX, 0x2222));
	CHECK_OK(vm_set_desc(v0, VM_REG_GUEST_CS, 0xffff0000, 0xffff, 0x9b));
	CHECK_OK(vm_set_capability(v0, VM_CAP_HALT_EXIT, 1));
	CHECK_OK(vm_setup_memory(ctx, 4 * MB, VM_MMAP_ALL));
	CHECK_OK(vm_alloc_memseg(ctx, 1, MB, "rom"));
	CHECK_OK(vm_mmap_memseg(ctx, 0xfff00000, 1, 0, MB, PROT_READ | PROT_EXEC));
	mem = vm_map_gpa(ctx, 0, 4 * MB);
	CHECK(mem != NULL);
	if (mem != NULL) {
		mem[0] = 0xa5;
		mem[4 * MB - 1] = 0x5a;
	}

	/* vCPU ids out of range. */
	CHECK_NULL(vm_vcpu_open(ctx, -1), EINVAL);
	CHECK_NULL(vm_vcpu_open(ctx, 16), EINVAL);
	CHECK_NULL(vm_vcpu_open(ctx, 1000), EINVAL);
	CHECK_NULL(vm_vcpu_open(ctx, INT_MIN), EINVAL);
	CHECK_NULL(vm_vcpu_open(ctx, INT_MAX), EINVAL);

	check_interrupts(ctx, v0, v1);
	check_guest(v0);
	check_ioctl(ctx);
	check_vcpu_state_calls(ctx, v0, v1, v2);
	check_topology(ctx);
	check_memory(ctx);
	check_rtc(ctx);

	/* Bad ctx handles. */
	check_bad_ctx(NULL, EFAULT, "NULL");
	closed = vm_open("misuse");
	CHECK(closed != NULL);
	vm_close(closed);
	check_bad_ctx(closed, EBADF, "closed");
	check_bad_ctx((struct vmctx *)&not_a_handle, EBADF, "not a handle");
	check_bad_ctx((struct vmctx *)v0, EBADF, "a vcpu handle");
	/* A VM destroyed through another handle taken before. */
	CHECK_OK(vm_create("victim"));
	va = vm_open("victim");
	vb = vm_open("victim");
	vv = vm_vcpu_open(va, 1);
	CHECK(va != NULL && vb != NULL && vv != NULL);
	CHECK_OK(vm_activate_cpu(vv));
	CHECK_OK(vm_setup_memory(va, 2 * MB, VM_MMAP_ALL));
	vm_destroy(va);
	check_bad_ctx(vb, EBADF, "destroyed VM");
	CHECK_NULL(vm_openf("victim", VMMAPI_OPEN_REINIT), ENOENT);

	/* Bad vCPU handles. */
	check_bad_vcpu(NULL, EFAULT, "NULL", -1);
	vc = vm_vcpu_open(ctx, 0);
	CHECK(vc != NULL);
	vm_vcpu_close(vc);
	check_bad_vcpu(vc, EBADF, "closed", -1);
	check_bad_vcpu((struct vcpu *)&not_a_handle, EBADF, "not a handle", -1);
	check_bad_vcpu((struct vcpu *)ctx, EBADF, "a ctx handle", -1);
	check_bad_vcpu(vv, EBADF, "destroyed VM", 1);
	fprintf(stderr, "-- end of bad handles\n");

	/* Closing and destroying bad handles: no crash, nothing else closed. */
	vm_vcpu_close(vc); /* twice */
	vm_vcpu_close(NULL);
	vm_vcpu_close((struct vcpu *)&not_a_handle);
	vm_close(closed); /* twice */
	vm_close(NULL);
	vm_close((struct vmctx *)&not_a_handle);
	vm_destroy(NULL);
	vm_destroy(closed);
	vm_destroy((struct vmctx *)&not_a_handle);
	vm_destroy((struct vmctx *)v0); /* a vCPU handle destroys nothing */
	/* Nor does closing a handle as the other kind close it. */
	vm_close((struct vmctx *)v0);
	vm_vcpu_close((struct vcpu *)ctx);
	CHECK(vcpu_id(v0) == 0);
	CHECK_OK(vm_get_topology(ctx, &s, &c, &t, &m));
	vm_destroy(vb); /* the VM is gone already: this only closes vb */
	CHECK_ERR(vm_ioapic_pulse_irq(vb, 9), EBADF);
	vm_vcpu_close(vv);
	CHECK_ERR(vcpu_id(vv), EBADF);
	closed = vm_open("misuse"); /* still there */
	CHECK(closed != NULL);
	vm_close(closed);

	/* A stale handle must not destroy a new VM that took the same name. */
	CHECK_OK(vm_create("reborn"));
	r1 = vm_open("reborn");
	r2 = vm_open("reborn");
	vm_destroy(r1);
	CHECK_OK(vm_create("reborn"));
	r3 = vm_open("reborn");
	CHECK(r3 != NULL);
	vm_destroy(r2);
	CHECK_ERR(vm_create("reborn"), EEXIST);
	CHECK_OK(vm_get_topology(r3, &s, &c, &t, &m));
	vm_destroy(r3);
	CHECK_OK(vm_create("reborn")); /* destroyed now */
	r3 = vm_open("reborn");
	vm_destroy(r3);

	/* Positive coverage of the functions no other test calls. */
	check_lowmem_limit();
	check_lapic_local_irq(ctx, v0, v1, v2);

	/* The VM that took all of the above still works, its state intact. */
	CHECK(vcpu_id(v0) == 0 && vcpu_id(v1) == 1 && vcpu_id(v2) == 2);
	CHECK(vmm_rs_vcpu_state(v0) == VCPU_IDLE);
	CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RAX, &val));
	CHECK(val == 0x1111);
	CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RIP, &val));
	CHECK(val == 0xfff0);
	CHECK_OK(vm_get_register(v1, VM_REG_GUEST_RBX, &val));
	CHECK(val == 0x2222);
	CHECK_OK(vm_set_register(v0, VM_REG_GUEST_R15, 0xfeedfacecafef00dULL));
	CHECK_OK(vm_get_register(v0, VM_REG_GUEST_R15, &val));
	CHECK(val == 0xfeedfacecafef00dULL);
	CHECK_OK(vm_get_desc(v0, VM_REG_GUEST_CS, &val, &limit, &access));
	CHECK(val == 0xffff0000 && limit == 0xffff && access == 0x9b);
	CHECK_OK(vm_get_capability(v0, VM_CAP_HALT_EXIT, &x));
	CHECK(x == 1);
	CHECK_OK(vm_get_x2apic_state(v0, &x2));
	CHECK(x2 == X2APIC_DISABLED);
	CHECK_OK(vm_get_topology(ctx, &s, &c, &t, &m));
	CHECK(s == 1 && c == 2 && t == 2 && m == 16);
	CHECK_OK(vm_active_cpus(ctx, &set));
	CHECK(set.__bits[0] == 3);
	CHECK_OK(vm_suspended_cpus(ctx, &set));
	CHECK(set.__bits[0] == 0);
	CHECK_OK(vm_debug_cpus(ctx, &set));
	CHECK(set.__bits[0] == 0);
	/* The IOAPIC: pin 9 at count 0, its entry as programmed. */
	CHECK_OK(vm_ioapic_pincount(ctx, &x));
	CHECK(x == 32);
	CHECK(rte_low(v0, 9) == 0x49);
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x49) == 0);
	CHECK_OK(vm_ioapic_assert_irq(ctx, 9));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x49) == 1);
	CHECK_OK(vm_ioapic_deassert_irq(ctx, 9));
	CHECK_ERR(vm_ioapic_deassert_irq(ctx, 9), ERANGE);
	{
		struct vm_ioapic_irq pin = { .irq = 9 };
		CHECK_OK(vmm_ioctl(ctx, VM_IOAPIC_PULSE_IRQ, &pin));
		/* vmm_ioctl runs each pin command as itself: the pulse left the
		 * count at 0, and an assert gives one deassert its count. */
		CHECK_ERR(vmm_ioctl(ctx, VM_IOAPIC_DEASSERT_IRQ, &pin), ERANGE);
		CHECK_OK(vmm_ioctl(ctx, VM_IOAPIC_ASSERT_IRQ, &pin));
		CHECK_OK(vmm_ioctl(ctx, VM_IOAPIC_DEASSERT_IRQ, &pin));
		CHECK_ERR(vmm_ioctl(ctx, VM_IOAPIC_DEASSERT_IRQ, &pin), ERANGE);
		CHECK_OK(vm_isa_pulse_irq(ctx, 9, 9));
	}
	CHECK_OK(vm_lapic_irq(v1, 0x71));
	CHECK(lapic_bit(v1, LAPIC_IRR, 0x71) == 1);
	CHECK_OK(vm_inject_nmi(v1));
	CHECK_OK(vm_restart_instruction(v0));
	CHECK_OK(vm_suspend_all_cpus(ctx));
	CHECK_OK(vm_debug_cpus(ctx, &set));
	CHECK(set.__bits[0] == 3);
	CHECK_OK(vm_resume_all_cpus(ctx));
	CHECK_OK(vm_debug_cpus(ctx, &set));
	CHECK(set.__bits[0] == 0);
	{
		struct vmm_rs_guest_stats gs;
		struct vmm_rs_action hlt = { .kind = VMM_RS_ACT_HLT };
		CHECK_OK(vmm_rs_guest_stats(v0, &gs));
		CHECK_OK(vmm_rs_guest_set_script(v2, &hlt, 1, 0));
		CHECK_OK(vmm_rs_guest_clear(v2));
	}
	/* Memory: layout, limit, segments and contents. */
	CHECK(vm_get_lowmem_limit(ctx) == VM_LOWMEM_LIMIT);
	CHECK(vm_get_lowmem_size(ctx) == 4 * MB && vm_get_highmem_size(ctx) == 0);
	CHECK_OK(vm_get_memseg(ctx, VM_SYSMEM, &len, NULL, 0));
	CHECK(len == 4 * MB);
	CHECK_OK(vm_get_memseg(ctx, 2, &len, NULL, 0));
	CHECK(len == 0);
	{
		vm_paddr_t gpa = 0;
		vm_ooffset_t segoff;
		int segid, prot, flags;
		CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, &flags));
		CHECK(gpa == 0 && segid == VM_SYSMEM && len == 4 * MB && prot == PROT_ALL);
		gpa = 1;
		CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, &flags));
		CHECK(gpa == 0xfff00000 && segid == 1 && len == MB);
	}
	CHECK(vm_map_gpa(ctx, 0, 4 * MB) == mem);
	if (mem != NULL)
		CHECK(mem[0] == 0xa5 && mem[4 * MB - 1] == 0x5a);

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_vcpu_close(v2);
	vm_destroy(ctx);
	return test_finish("api_misuse_test");
}
