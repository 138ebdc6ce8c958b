/*
 * Guest memory ioctls and libvmmapi memory functions: segments, maps,
 * getnext, unmap, vm_setup_memory / vm_map_gpa, what VM_REINIT keeps
 * (system memory) and removes (device-memory maps), host addresses that
 * outlive vm_destroy while a handle is open, and
 * the error paths (FreeBSD 14: bad geometry EINVAL, overlap EFAULT, no
 * such map ENOENT/EINVAL).
 */
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include "vmm_rs.h"
#include "test_util.h"

#define MB (1024UL * 1024)

static void *
run_once(void *p)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	static int code;
	code = vm_run(p, &vmrun) == 0 ? vme.exitcode : -1;
	return &code;
}

int
main(void)
{
	struct vmctx *ctx;
	size_t len;
	char name[VM_MAX_SUFFIXLEN + 1];

	watchdog_start(60, "memory_test");
	CHECK_OK(vm_create("mem"));
	ctx = vm_open("mem");

	/* Segments through the ioctl face. */
	{
		struct vm_memseg seg = { .segid = 0, .len = 2 * MB };
		CHECK_OK(vmm_ioctl(ctx, VM_ALLOC_MEMSEG, &seg));
		CHECK_ERR(vmm_ioctl(ctx, VM_ALLOC_MEMSEG, &seg), EEXIST);
		seg.len = 4 * MB;
		CHECK_ERR(vmm_ioctl(ctx, VM_ALLOC_MEMSEG, &seg), EINVAL); /* exists, other size */
		seg.segid = 1;
		seg.len = 4097; /* not page-aligned */
		CHECK_ERR(vmm_ioctl(ctx, VM_ALLOC_MEMSEG, &seg), EINVAL);
		seg.len = 0;
		CHECK_ERR(vmm_ioctl(ctx, VM_ALLOC_MEMSEG, &seg), EINVAL);
		seg.segid = 100;
		seg.len = MB;
		CHECK_ERR(vmm_ioctl(ctx, VM_ALLOC_MEMSEG, &seg), EINVAL);
		CHECK_ERR(vmm_ioctl(ctx, VM_ALLOC_MEMSEG, NULL), EFAULT);

		struct vm_memseg get = { .segid = 0 };
		CHECK_OK(vmm_ioctl(ctx, VM_GET_MEMSEG, &get));
		CHECK(get.len == 2 * MB && get.name[0] == '\0');
		get.segid = 2; /* unallocated: length 0 */
		CHECK_OK(vmm_ioctl(ctx, VM_GET_MEMSEG, &get));
		CHECK(get.len == 0);
		get.segid = -1;
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_MEMSEG, &get), EINVAL);
	}

	/* A named device-memory segment through libvmmapi. */
	CHECK_OK(vm_alloc_memseg(ctx, 1, MB, "bootrom"));
	CHECK_OK(vm_alloc_memseg(ctx, 1, MB, "bootrom")); /* same: success */
	CHECK_ERR(vm_alloc_memseg(ctx, 1, 2 * MB, "bootrom"), EINVAL);
	CHECK_OK(vm_get_memseg(ctx, 1, &len, name, sizeof(name)));
	CHECK(len == MB && strcmp(name, "bootrom") == 0);
	CHECK_ERR(vm_get_memseg(ctx, 1, &len, name, 4), ENAMETOOLONG);
	CHECK_ERR(vm_alloc_memseg(ctx, 2, MB, "a-name-that-is-too-long"), ENAMETOOLONG);

	/* Maps. */
	{
		struct vm_memmap mm = { .gpa = 0, .segid = 0, .segoff = 0, .len = 2 * MB,
			.prot = PROT_READ | PROT_WRITE };
		CHECK_OK(vmm_ioctl(ctx, VM_MMAP_MEMSEG, &mm));
		CHECK_ERR(vmm_ioctl(ctx, VM_MMAP_MEMSEG, &mm), EFAULT); /* overlap */
		mm.gpa = 4 * MB + 1; /* misaligned */
		CHECK_ERR(vmm_ioctl(ctx, VM_MMAP_MEMSEG, &mm), EINVAL);
		mm.gpa = 4 * MB;
		mm.segoff = MB; /* offset + len beyond the segment */
		CHECK_ERR(vmm_ioctl(ctx, VM_MMAP_MEMSEG, &mm), EINVAL);
		mm.segoff = 0;
		mm.segid = 3; /* no such segment */
		CHECK_ERR(vmm_ioctl(ctx, VM_MMAP_MEMSEG, &mm), EINVAL);
		mm.segid = 0;
		mm.prot = 0;
		CHECK_ERR(vmm_ioctl(ctx, VM_MMAP_MEMSEG, &mm), EINVAL);
		/* A second map of the same segment: an alias. */
		CHECK_OK(vm_mmap_memseg(ctx, 4 * MB, 0, 0, 2 * MB, PROT_READ | PROT_WRITE));
		CHECK_OK(vm_mmap_memseg(ctx, 0xfff00000, 1, 0, MB, PROT_READ | PROT_EXEC));

		/* getnext walks the maps in gpa order. */
		uint64_t gpa = 1;
		int segid, prot, flags;
		vm_ooffset_t segoff;
		size_t mlen;
		CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &mlen, &prot, &flags));
		CHECK(gpa == 4 * MB && segid == 0 && mlen == 2 * MB);
		gpa++;
		CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &mlen, &prot, &flags));
		CHECK(gpa == 0xfff00000 && segid == 1 && prot == (PROT_READ | PROT_EXEC));
		gpa++;
		CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &mlen, &prot, &flags), ENOENT);
		CHECK_ERR(vm_mmap_getnext(ctx, NULL, &segid, &segoff, &mlen, &prot, &flags), EFAULT);

		/* Unmap needs the exact range. */
		CHECK_ERR(vm_munmap_memseg(ctx, 4 * MB, MB), EINVAL);
		CHECK_OK(vm_munmap_memseg(ctx, 4 * MB, 2 * MB));
		gpa = 1;
		CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &mlen, &prot, &flags));
		CHECK(gpa == 0xfff00000);
	}

	/* The memory ioctls are lock-all: they take a vCPU out of VM_RUN. */
	{
		struct vcpu *v = vm_vcpu_open(ctx, 0);
		pthread_t t;
		void *code;
		CHECK_OK(vm_activate_cpu(v));
		pthread_create(&t, NULL, run_once, v);
		while (vmm_rs_vcpu_state(v) != VCPU_SLEEPING)
			sched_yield();
		struct vm_munmap um = { .gpa = 0xfff00000, .len = MB };
		CHECK_OK(vmm_ioctl(ctx, VM_MUNMAP_MEMSEG, &um));
		pthread_join(t, &code);
		CHECK(*(int *)code == VM_EXITCODE_REQIDLE);
		vm_vcpu_close(v);
	}

	/* VM_REINIT releases everything: start from a new VM. */
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
	{
		struct vcpu *v = vm_vcpu_open(ctx, 0);
		struct vm_exit vme;
		struct vm_run vmrun = { .vm_exit = &vme };
		CHECK_OK(vm_run(v, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED);
		vm_vcpu_close(v);
	}
	CHECK_OK(vm_reinit(ctx));
	/* FreeBSD vm_cleanup(vm, false): segments stay, so do sysmem maps. */
	CHECK_OK(vm_get_memseg(ctx, 0, &len, NULL, 0));
	CHECK(len == 2 * MB);
	CHECK_OK(vm_get_memseg(ctx, 1, &len, name, sizeof(name)));
	CHECK(len == MB && strcmp(name, "bootrom") == 0);
	{
		vm_paddr_t gpa = 0;
		vm_ooffset_t segoff;
		int segid, prot, flags;
		size_t mlen;
		CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &mlen, &prot, &flags));
		CHECK(gpa == 0 && segid == 0 && mlen == 2 * MB);
		gpa = 1; /* the bootrom's map (device memory) is gone */
		CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &segoff, &mlen, &prot, &flags), ENOENT);
	}
	vm_destroy(ctx);

	/* libvmmapi's layout: lowmem at 0, guest RAM visible through vm_map_gpa. */
	CHECK_OK(vm_create("mem"));
	ctx = vm_open("mem");
	CHECK_OK(vm_setup_memory(ctx, 64 * MB, VM_MMAP_ALL));
	CHECK_OK(vm_setup_memory(ctx, 64 * MB, VM_MMAP_ALL)); /* again: success */
	CHECK(vm_get_lowmem_size(ctx) == 64 * MB);
	CHECK(vm_get_highmem_size(ctx) == 0);
	{
		volatile uint32_t *p = vm_map_gpa(ctx, 0x1000, 4);
		volatile uint32_t *q = vm_map_gpa(ctx, 0x1000, 4);
		CHECK(p != NULL && p == q);
		if (p != NULL) {
			*p = 0xdeadbeef;
			CHECK(*q == 0xdeadbeef);
		}
		CHECK(vm_map_gpa(ctx, 64 * MB, 4) == NULL); /* past the end */
	}
	CHECK_ERR(vm_setup_memory(ctx, 64 * MB, VM_MMAP_SPARSE), EINVAL);
	/* Another size fails and leaves the recorded layout alone. */
	{
		char *base = vm_map_gpa(ctx, 0, 1);
		CHECK_ERR(vm_setup_memory(ctx, (size_t)5 << 30, VM_MMAP_ALL), EINVAL);
		CHECK(vm_get_lowmem_size(ctx) == 64 * MB && vm_get_highmem_size(ctx) == 0);
		CHECK(vm_rev_map_gpa(ctx, base + 80 * MB) == (vm_paddr_t)-1);
		CHECK(vm_rev_map_gpa(ctx, base + 0x1000) == 0x1000);
	}

	/*
	 * A reset keeps guest RAM: the same host address, the same contents,
	 * and vm_setup_memory of the same size is success (bhyveload's path).
	 */
	{
		volatile uint32_t *p = vm_map_gpa(ctx, 0x2000, 4);
		CHECK(p != NULL);
		if (p != NULL)
			*p = 0x5eed;
		CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
		CHECK_OK(vm_reinit(ctx));
		CHECK(vm_map_gpa(ctx, 0x2000, 4) == p);
		CHECK(p != NULL && *p == 0x5eed);
		CHECK_OK(vm_setup_memory(ctx, 64 * MB, VM_MMAP_ALL));
		CHECK_ERR(vm_setup_memory(ctx, 128 * MB, VM_MMAP_ALL), EINVAL);
	}

	/* After vm_destroy, guest RAM is given back but stays mapped (reading
	 * zeros) while a handle is open. */
	{
		struct vmctx *other = vm_open("mem");
		volatile uint32_t *p = vm_map_gpa(ctx, 0x2000, 4);
		CHECK(other != NULL && p != NULL);
		vm_destroy(ctx);
		if (p != NULL) {
			CHECK(*p == 0); /* would fault if unmapped */
			*p = 1;
		}
		CHECK(vm_map_gpa(other, 0x2000, 4) == NULL && errno == EBADF);
		vm_close(other);
	}
	return test_finish("memory_test");
}
