/*
 * Seeded random arguments through the ioctl face: every command
 * libvmmapi lists (but VM_RUN, which would run the guest) and random
 * command numbers, with argument structures full of random bytes (the
 * vCPU id and a few sizes kept small often enough to get past the first
 * checks; the three pointers a structure carries, NULL or a scratch
 * buffer of the size the structure claims, as the C contract requires).
 * Every call returns 0, or -1 with an errno; nothing panics (the
 * library's stderr is captured and searched); afterwards the VM still
 * works. VMM_RS_FUZZ_SEED picks another seed.
 */
#include <pthread.h>
#include <sys/mman.h>

#include "apic_util.h"

static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static uint64_t
rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint64_t
below(uint64_t n)
{
	return rnd() % n;
}

/* Scratch buffers the pointers of an argument may point into. */
static int regnums[64];
static uint64_t regvals[64];
static unsigned char cpus[256];

static union {
	unsigned char bytes[4096];
	struct vm_register_set regset;
	struct vm_cpuset cpuset;
	struct vm_memseg memseg;
	struct vm_memmap memmap;
	struct vm_readwrite_kernemu_device kernemu;
	struct vm_lapic_msi msi;
	struct vm_rtc_data rtc;
	uint64_t align;
} arg;

/* Random bytes, then fields made plausible often enough to reach past the first checks. */
static void
fill(unsigned long cmd)
{
	for (size_t i = 0; i < sizeof(arg.bytes); i += 8) {
		uint64_t r = rnd();
		memcpy(&arg.bytes[i], &r, 8);
	}
	if (below(4) != 0) {
		int id = (int)below(3); /* most arguments start with a vCPU id */
		memcpy(arg.bytes, &id, sizeof(id));
	}
	if (below(2) == 0) {
		/* Small values in the next words (pins, vectors, registers, sizes). */
		for (size_t i = 4; i < 32; i += 4) {
			uint32_t small = (uint32_t)below(64);
			memcpy(&arg.bytes[i], &small, 4);
		}
	}
	switch (cmd) {
	case VM_SET_REGISTER_SET:
	case VM_GET_REGISTER_SET:
		arg.regset.count = (unsigned)below(65);
		for (int i = 0; i < 64; i++)
			regnums[i] = below(8) == 0 ? (int)rnd() : (int)below(64);
		arg.regset.regnums = below(16) == 0 ? NULL : regnums;
		arg.regset.regvals = below(16) == 0 ? NULL : regvals;
		break;
	case VM_GET_CPUS:
		arg.cpuset.which = (int)below(5) - 1;
		arg.cpuset.cpusetsize = (int)below(sizeof(cpus) + 1) - (below(8) == 0 ? 300 : 0);
		arg.cpuset.cpus = below(16) == 0 ? NULL : (cpuset_t *)cpus;
		break;
	case VM_ALLOC_MEMSEG:
		/* Segments of up to 64 MiB: the host commits nothing until touched. */
		arg.memseg.segid = (int)below(5);
		arg.memseg.len = below(2) == 0 ? below(17) * 4096 : arg.memseg.len & ((64 << 20) - 1);
		if (below(2) == 0)
			arg.memseg.name[0] = '\0';
		break;
	case VM_MMAP_MEMSEG:
		arg.memmap.gpa = below(8) == 0 ? rnd() : below(4096) * 4096;
		arg.memmap.segid = (int)below(5);
		arg.memmap.segoff = below(8) == 0 ? rnd() : below(4) * 4096;
		arg.memmap.len = below(8) == 0 ? arg.memmap.len & ((64 << 20) - 1) : below(17) * 4096;
		arg.memmap.prot = (int)below(9);
		arg.memmap.flags = below(2) == 0 ? 0 : below(2) == 0 ? VM_MEMMAP_F_WIRED : (int)rnd();
		break;
	case VM_SET_KERNEMU_DEV:
	case VM_GET_KERNEMU_DEV: {
		/* The local APIC, the I/O APIC, the HPET, or anywhere. */
		static const uint64_t bases[] = { 0xfee00000, 0xfec00000, 0xfed00000 };
		arg.kernemu.access_width = (unsigned)below(5);
		arg.kernemu.gpa = below(8) == 0 ? rnd() : bases[below(3)] + below(0x400);
		break;
	}
	case VM_LAPIC_MSI:
		arg.msi.addr = below(8) == 0 ? rnd() : 0xfee00000 | below(16) << 12 | below(4) << 2;
		arg.msi.msg = below(8) == 0 ? rnd() : below(0x800);
		break;
	case VM_RTC_READ:
	case VM_RTC_WRITE:
		arg.rtc.offset = (int)below(140) - 4;
		break;
	default:
		break;
	}
}

/* The errno values the library documents. */
static int
known_errno(int e)
{
	static const int known[] = { EINVAL, EBUSY, ENOENT, EEXIST, EALREADY, EFAULT, E2BIG, ERANGE,
		ENOMEM, ENOSPC, EBADF, ENAMETOOLONG, ENODEV, EINTR, EIO, ENOTTY };
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (e == known[i])
			return 1;
	return 0;
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v0;
	const char *seed = getenv("VMM_RS_FUZZ_SEED");
	int iters = getenv("VMM_RS_UNDER_VALGRIND") ? 100000 : 1000000;

	watchdog_start(120, "ioctl_fuzz_test");
	if (seed != NULL)
		rng_state = strtoull(seed, NULL, 0) * 0x9e3779b97f4a7c15ULL + 1;
	CHECK_OK(vm_create("ioctl_fuzz"));
	ctx = vm_open("ioctl_fuzz");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("ioctl_fuzz_test");
	CHECK_OK(vm_setup_memory(ctx, 4 << 20, VM_MMAP_ALL));
	v0 = vm_vcpu_open(ctx, 0);

	size_t ncmds = 0;
	vm_get_ioctls(&ncmds);
	const unsigned long *cmds = vm_get_ioctls(NULL);
	CHECK(cmds != NULL && ncmds > 50);
	if (cmds == NULL)
		return test_finish("ioctl_fuzz_test");

	/* The library's complaints (a caught panic prints one) go to a file. */
	fflush(stderr);
	FILE *log = tmpfile();
	int saved = dup(2);
	CHECK(log != NULL && saved >= 0);
	if (log == NULL || saved < 0)
		return test_finish("ioctl_fuzz_test");
	t_watchdog_fd = saved;
	dup2(fileno(log), 2);

	int bad_rc = 0, no_errno = 0, odd_errno = 0, eio = 0, ok = 0;
	unsigned long bad_cmd = 0;
	for (int i = 0; i < iters; i++) {
		unsigned long cmd = below(10) == 0 ? (unsigned long)rnd() : cmds[below(ncmds)];
		if (cmd == VM_RUN)
			continue;
		fill(cmd);
		errno = 0;
		int rc = vmm_ioctl(ctx, cmd, &arg);
		if (rc == 0) {
			ok++;
		} else if (rc != -1) {
			bad_rc++;
			bad_cmd = cmd;
		} else if (errno == 0) {
			no_errno++;
			bad_cmd = cmd;
		} else if (!known_errno(errno)) {
			odd_errno++;
			bad_cmd = cmd;
		} else if (errno == EIO) {
			eio++; /* the 8259, PIT and RTC refuse some accesses so; a panic too */
		}
	}

	fflush(stderr);
	dup2(saved, 2);
	t_watchdog_fd = 2;
	close(saved);
	char line[512];
	int panics = 0;
	rewind(log);
	while (fgets(line, sizeof(line), log) != NULL) {
		if (strstr(line, "panicked") != NULL) {
			if (panics++ < 5)
				fprintf(stderr, "library: %s", line);
		}
	}
	fclose(log);

	printf("ioctl_fuzz_test: %d calls, %d succeeded, %d EIO, seed %#llx\n", iters, ok, eio,
	    (unsigned long long)(seed != NULL ? strtoull(seed, NULL, 0) : 0x243f6a8885a308d3ULL));
	CHECK(panics == 0);
	CHECK(bad_rc == 0);
	CHECK(no_errno == 0);
	CHECK(odd_errno == 0);
	if (bad_rc != 0 || no_errno != 0 || odd_errno != 0)
		fprintf(stderr, "last bad command %#lx\n", bad_cmd);
	CHECK(ok > iters / 50); /* the arguments get past the checks often enough to test something */

	/* The VM that took all that still works: reset it (every active vCPU acknowledges the suspend), then run a guest on its RAM. */
	watchdog_phase("ioctl_fuzz_test: reset and run after the fuzz");
	cpuset_t active;
	pthread_t t[64];
	struct vcpu *vs[64];
	int nt = 0;
	int rc = vm_suspend(ctx, VM_SUSPEND_RESET);
	CHECK(rc == 0 || errno == EALREADY);
	CHECK_OK(vm_active_cpus(ctx, &active));
	for (int id = 0; id < 64 && nt < 64; id++) {
		if ((((const unsigned char *)&active)[id / 8] >> (id % 8) & 1) == 0)
			continue;
		vs[nt] = vm_vcpu_open(ctx, id);
		CHECK(vs[nt] != NULL && pthread_create(&t[nt], NULL, run_to_suspend, vs[nt]) == 0);
		nt++;
	}
	for (int i = 0; i < nt; i++) {
		void *r = NULL;
		CHECK(pthread_join(t[i], &r) == 0 && r == NULL);
		vm_vcpu_close(vs[i]);
	}
	CHECK_OK(vm_reinit(ctx));
	CHECK_OK(vm_activate_cpu(v0));
	struct vmm_rs_action guest[] = {
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = 0x1000, .size = 4, .value = 0x1234 },
		{ .kind = VMM_RS_ACT_MMIO_READ, .gpa = 0x1000, .size = 4 },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 },
	};
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct vmm_rs_guest_stats gs = { 0 };
	CHECK_OK(vmm_rs_guest_set_script(v0, guest, 3, -1));
	CHECK_OK(vm_run(v0, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);
	CHECK_OK(vmm_rs_guest_stats(v0, &gs));
	CHECK(gs.last_read == 0x1234);
	CHECK_OK(vm_ioapic_assert_irq(ctx, 3));
	CHECK_OK(vm_ioapic_deassert_irq(ctx, 3));

	free((void *)cmds);
	vm_vcpu_close(v0);
	vm_destroy(ctx);
	return test_finish("ioctl_fuzz_test");
}
