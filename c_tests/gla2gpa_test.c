/*
 * vm_gla2gpa / vm_gla2gpa_nofault (FreeBSD _vm_gla2gpa): a 4-level walk
 * through page tables built in guest RAM, the accessed and dirty bits it
 * sets, a protection fault queued as #PF with CR2 (only by the faulting
 * form), and EFAULT for page tables outside guest RAM.
 */
#include <sys/mman.h>

#include "apic_util.h"

#define MB (1024UL * 1024)
#define PG_V 0x1ULL
#define PG_RW 0x2ULL
#define PG_U 0x4ULL
#define PG_A 0x20ULL
#define PG_M 0x40ULL
/* A user address: PML4 index 1, PDPT 2, PD 3, PT 4, offset 0x123. */
#define GLA ((1ULL << 39) | (2ULL << 30) | (3ULL << 21) | (4ULL << 12) | 0x123)

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;
	uint64_t gpa = 0, i1, i2, cr2;
	int fault = -1;
	volatile uint64_t *ram;

	watchdog_start(30, "gla2gpa_test");
	CHECK_OK(vm_create("gla2gpa"));
	ctx = vm_open("gla2gpa");
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_setup_memory(ctx, 16 * MB, VM_MMAP_ALL));
	ram = vm_map_gpa(ctx, 0, 16 * MB);
	CHECK(ram != NULL);
	if (ram == NULL)
		return test_finish("gla2gpa_test");
	/* PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000 -> 4 MiB page. */
	ram[0x1000 / 8 + 1] = 0x2000 | PG_V | PG_RW | PG_U;
	ram[0x2000 / 8 + 2] = 0x3000 | PG_V | PG_RW | PG_U;
	ram[0x3000 / 8 + 3] = 0x4000 | PG_V | PG_RW | PG_U;
	ram[0x4000 / 8 + 4] = (4 * MB) | PG_V; /* supervisor, read-only */

	/* A paged guest is in protected mode (else #PF loses its error code). */
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_CR0, 0x80000001));
	struct vm_guest_paging paging = {
		.cr3 = 0x1000, .cpl = 0, .cpu_mode = CPU_MODE_64BIT, .paging_mode = PAGING_MODE_64,
	};
	CHECK_OK(vm_gla2gpa_nofault(v, &paging, GLA, PROT_READ, &gpa, &fault));
	CHECK(fault == 0 && gpa == 4 * MB + 0x123);
	CHECK((ram[0x4000 / 8 + 4] & PG_A) == 0); /* nofault: nothing written */
	CHECK_OK(vm_gla2gpa(v, &paging, GLA, PROT_READ, &gpa, &fault));
	CHECK(fault == 0 && gpa == 4 * MB + 0x123);
	CHECK((ram[0x4000 / 8 + 4] & (PG_A | PG_M)) == PG_A);
	CHECK((ram[0x1000 / 8 + 1] & PG_A) == PG_A);

	/* A user read of a supervisor page: reported by both forms, queued
	 * as #PF (P|U) with CR2 only by the faulting one. */
	paging.cpl = 3;
	CHECK_OK(vm_gla2gpa_nofault(v, &paging, GLA, PROT_READ, &gpa, &fault));
	CHECK(fault == 1);
	CHECK_OK(vm_get_intinfo(v, &i1, &i2));
	CHECK(i2 == 0);
	CHECK_OK(vm_gla2gpa(v, &paging, GLA, PROT_READ, &gpa, &fault));
	CHECK(fault == 1);
	CHECK_OK(vm_get_intinfo(v, &i1, &i2));
	CHECK((i2 & 0xff) == 14 && (i2 & 0x80000000) && (i2 >> 32) == 0x5);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_CR2, &cr2));
	CHECK(cr2 == GLA);

	/* A supervisor write to it: the dirty bit once it is writable. */
	paging.cpl = 0;
	ram[0x4000 / 8 + 4] |= PG_RW;
	CHECK_OK(vm_gla2gpa(v, &paging, GLA, PROT_WRITE, &gpa, &fault));
	CHECK(fault == 0 && (ram[0x4000 / 8 + 4] & PG_M) == PG_M);

	/* Non-canonical: #GP, reported. Page tables outside RAM: EFAULT. */
	CHECK_OK(vm_gla2gpa_nofault(v, &paging, 1ULL << 47, PROT_READ, &gpa, &fault));
	CHECK(fault == 1);
	paging.cr3 = 64 * MB;
	fault = -1;
	CHECK_ERR(vm_gla2gpa_nofault(v, &paging, GLA, PROT_READ, &gpa, &fault), EFAULT);
	CHECK(fault == -1);
	CHECK_ERR(vm_gla2gpa(v, NULL, GLA, PROT_READ, &gpa, &fault), EFAULT);
	CHECK_ERR(vm_gla2gpa(v, &paging, GLA, PROT_READ, NULL, &fault), EFAULT);
	CHECK_ERR(vm_gla2gpa(v, &paging, GLA, PROT_READ, &gpa, NULL), EFAULT);

	/* The ioctl face, with a vCPU id out of range. */
	{
		struct vm_gla2gpa gg = { .vcpuid = 0, .prot = PROT_READ, .gla = 0x1234, .paging = {
			.paging_mode = PAGING_MODE_FLAT } };
		CHECK_OK(vmm_ioctl(ctx, VM_GLA2GPA_NOFAULT, &gg));
		CHECK(gg.fault == 0 && gg.gpa == 0x1234);
		gg.vcpuid = 99;
		CHECK_ERR(vmm_ioctl(ctx, VM_GLA2GPA, &gg), EINVAL);
	}

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("gla2gpa_test");
}
