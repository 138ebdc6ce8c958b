/*
 * A device model and a simulated guest sharing guest RAM, the way a
 * bhyve device (virtio, AHCI, ...) works: the guest's loads and stores
 * reach RAM in place, without exits, as through the nested page tables;
 * the device reads the guest's request and writes its reply through
 * vm_map_gpa(), and completes it with an MSI the guest takes and EOIs.
 * A store to the read-only boot ROM fails VM_RUN with EFAULT.
 */
#include <sys/mman.h>

#include "vmm_rs.h"
#include "test_util.h"

#define LOAD(a, s) { .kind = VMM_RS_ACT_LOAD, .gpa = (a), .size = (s) }
#define STORE(a, s, v) { .kind = VMM_RS_ACT_STORE, .gpa = (a), .size = (s), .value = (v) }
#define OUT(p) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1 }
#define ACT(k) { .kind = (k) }

#define DESC 0x1000      /* the request: buffer address, length */
#define BUF 0x2000       /* the data */
#define REPLY 0x3000     /* the device's reply */
#define DOORBELL 0x510
#define DONE 0x511
#define VECTOR 0x45
#define ROM 0xfffff000ULL

static struct vm_exit vme;
static struct vm_run vmrun = { .vm_exit = &vme };

static uint64_t
load64(struct vmctx *ctx, uint64_t gpa)
{
	uint64_t v = 0;
	void *p = vm_map_gpa(ctx, gpa, sizeof(v));
	CHECK(p != NULL);
	if (p != NULL)
		memcpy(&v, p, sizeof(v));
	return v;
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;
	struct vmm_rs_guest_stats gs;

	watchdog_start(60, "guest_ram_test");
	CHECK_OK(vm_create("guest_ram"));
	ctx = vm_open("guest_ram");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("guest_ram_test");
	CHECK_OK(vm_setup_memory(ctx, 2 << 20, VM_MMAP_ALL));
	void *rom = vm_create_devmem(ctx, VM_BOOTROM, "bootrom", 4096);
	CHECK(rom != NULL && rom != MAP_FAILED);
	if (rom != NULL && rom != MAP_FAILED)
		memset(rom, 0x90, 4096);
	CHECK_OK(vm_mmap_memseg(ctx, ROM, VM_BOOTROM, 0, 4096, PROT_READ | PROT_EXEC));
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));

	struct vmm_rs_action guest[] = {
		STORE(0xfee000f0, 4, 0x1ff),           /* APIC on */
		STORE(BUF, 4, 0x41424344),             /* the data */
		STORE(DESC, 8, BUF),                   /* the request */
		STORE(DESC + 8, 4, 4),
		OUT(DOORBELL),
		ACT(VMM_RS_ACT_WAIT_INTR_EOI),         /* the completion */
		LOAD(REPLY, 8),
		OUT(DONE),
		LOAD(ROM, 1),
		OUT(DONE),
		STORE(ROM, 1, 0xcc),
	};
	CHECK_OK(vmm_rs_guest_set_script(v, guest, 11, -1));

	/* The doorbell: the request is in RAM already, no exit on the way. */
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == DOORBELL);
	uint64_t buf = load64(ctx, DESC);
	uint32_t len = (uint32_t)load64(ctx, DESC + 8);
	CHECK(buf == BUF && len == 4);
	uint32_t data = 0;
	void *p = vm_map_gpa(ctx, buf, len);
	CHECK(p != NULL);
	if (p != NULL)
		memcpy(&data, p, sizeof(data));
	CHECK(data == 0x41424344);

	/* The device replies in RAM and signals with an MSI. */
	uint64_t reply = 0x1122334400000000ULL | (data + 1);
	p = vm_map_gpa(ctx, REPLY, sizeof(reply));
	CHECK(p != NULL);
	if (p != NULL)
		memcpy(p, &reply, sizeof(reply));
	CHECK_OK(vm_lapic_msi(ctx, 0xfee00000, VECTOR));

	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == DONE);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_vector == VECTOR);
	CHECK(gs.last_read == reply);

	/* The ROM reads; a store to it is EFAULT and changes nothing. */
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == DONE);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_read == 0x90);
	CHECK_ERR(vm_run(v, &vmrun), EFAULT);
	CHECK_ERR(vm_run(v, &vmrun), EFAULT); /* retried, the store faults again */
	CHECK(rom == NULL || rom == MAP_FAILED || ((unsigned char *)rom)[0] == 0x90);

	/* Only the local APIC's SVR and EOI stores were MMIO; RAM and ROM accesses never exited. */
	int ie = stat_index(ctx, "vm exits for instruction emulation");
	int nf = stat_index(ctx, "vm exits due to nested page fault");
	int n = 0;
	uint64_t *st = vm_get_stats(v, NULL, &n);
	CHECK(ie >= 0 && nf >= 0 && st != NULL);
	if (ie >= 0 && nf >= 0 && st != NULL)
		CHECK(st[ie] == 2 && st[nf] == 2);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("guest_ram_test");
}
