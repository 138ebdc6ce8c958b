/*
 * Starting application processors as FreeBSD 14 does: the BSP's guest
 * sends INIT then STARTUP through its local APIC's ICR, and VM_RUN
 * returns to userland, which starts the AP (bhyve's spinup_ap):
 *   - VM_CAP_IPI_EXIT off: VM_EXITCODE_SPINUP_AP (vcpu, rip = vector << 12)
 *     for a STARTUP to a vCPU an INIT left waiting; the INIT itself and
 *     anything not aimed at one physical destination give no exit;
 *   - VM_CAP_IPI_EXIT on: VM_EXITCODE_IPI for INIT and for STARTUP, with
 *     the target vCPUs in vm_run.cpuset.
 */
#include "apic_util.h"

static int
cpuset_isset(const cpuset_t *set, int cpu)
{
	const unsigned char *b = (const unsigned char *)set;
	return (b[cpu / 8] >> (cpu % 8)) & 1;
}

#define ICR(v) { .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = LAPIC_GPA + LAPIC_ICR_LO, .size = 4, .value = (v) }
#define ICR_HI(d) { .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = LAPIC_GPA + LAPIC_ICR_HI, .size = 4, .value = (uint64_t)(d) << 24 }
#define INIT_ASSERT 0x4500u  /* INIT, level-triggered, assert */
#define STARTUP 0x0600u
#define ALL_BUT_SELF 0xC0000u

int
main(void)
{
	watchdog_start(30, "ap_start_test");
	CHECK_OK(vm_create("apstart"));
	struct vmctx *ctx = vm_open("apstart");
	struct vcpu *v[3];
	for (int i = 0; i < 3; i++) {
		v[i] = vm_vcpu_open(ctx, i);
		CHECK_OK(vm_activate_cpu(v[i]));
	}
	struct vm_exit vme = { 0 };
	cpuset_t set;
	struct vm_run vmrun = { .vm_exit = &vme, .cpuset = &set, .cpusetsize = sizeof(set) };

	/* Without VM_CAP_IPI_EXIT: the old-style spin-up exit. */
	struct vmm_rs_action bsp[] = {
		ICR_HI(1),
		ICR(STARTUP | 0x9F), /* no INIT yet: nobody waits */
		ICR(INIT_ASSERT),
		ICR(STARTUP | 0x9F),
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1, .value = 1 },
	};
	CHECK_OK(vmm_rs_guest_set_script(v[0], bsp, 5, -1));
	CHECK_OK(vm_run(v[0], &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_SPINUP_AP);
	CHECK(vme.u.spinup_ap.vcpu == 1 && vme.u.spinup_ap.rip == 0x9F000);
	CHECK_OK(vm_run(v[0], &vmrun)); /* and the BSP runs on */
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.eax == 1);

	/* With it: both IPIs leave VM_RUN, their targets in vmrun.cpuset. */
	CHECK_OK(vm_set_capability(v[0], VM_CAP_IPI_EXIT, 1));
	struct vmm_rs_action bsp2[] = {
		ICR_HI(0),
		ICR(ALL_BUT_SELF | INIT_ASSERT),
		ICR(ALL_BUT_SELF | STARTUP | 0x10),
		ICR(ALL_BUT_SELF | STARTUP | 0x10), /* nobody waits now */
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1, .value = 2 },
	};
	CHECK_OK(vmm_rs_guest_set_script(v[0], bsp2, 5, -1));
	memset(&set, 0xff, sizeof(set));
	CHECK_OK(vm_run(v[0], &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_IPI && vme.u.ipi.mode == 0x500);
	CHECK(!cpuset_isset(&set, 0) && cpuset_isset(&set, 1) && cpuset_isset(&set, 2));
	CHECK(!cpuset_isset(&set, 3) && !cpuset_isset(&set, 1023));
	/* A NULL cpuset fails the call, but the exit is there. */
	vmrun.cpuset = NULL;
	vme.exitcode = -1;
	CHECK_ERR(vm_run(v[0], &vmrun), EFAULT);
	CHECK(vme.exitcode == VM_EXITCODE_IPI && vme.u.ipi.mode == 0x600 && vme.u.ipi.vector == 0x10);
	vmrun.cpuset = &set;
	CHECK_OK(vm_run(v[0], &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.eax == 2);

	/* The cpuset is copied at any size, zero-filled past cpuset_t. */
	unsigned char big[sizeof(cpuset_t) + 64];
	struct vmm_rs_action bsp3[] = {
		ICR(ALL_BUT_SELF | INIT_ASSERT),
		ICR(ALL_BUT_SELF | INIT_ASSERT),
		ICR(ALL_BUT_SELF | INIT_ASSERT),
	};
	CHECK_OK(vmm_rs_guest_set_script(v[0], bsp3, 3, -1));
	memset(big, 0xff, sizeof(big));
	vmrun.cpuset = (cpuset_t *)big;
	vmrun.cpusetsize = sizeof(big);
	CHECK_OK(vm_run(v[0], &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_IPI && big[0] == 0x6 && big[sizeof(big) - 1] == 0);
	/* Size 0 copies nothing, so a NULL cpuset is fine then (FreeBSD's
	 * copyout of 0 bytes). */
	vmrun.cpusetsize = 0;
	memset(big, 0xff, sizeof(big));
	CHECK_OK(vm_run(v[0], &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_IPI && big[0] == 0xff);
	vmrun.cpuset = NULL;
	CHECK_OK(vm_run(v[0], &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_IPI);
	vmrun.cpuset = (cpuset_t *)big;

	/* An SMI or remote-read IPI, which the local APIC keeps in its ICR but
	 * cannot send (FreeBSD 14's vlapic_icrlo_write_handler returns 1):
	 * the guest's store fails VM_RUN with EPERM, no exit written, and the
	 * next VM_RUN runs on after the store; VM_SET_KERNEMU_DEV fails alike. */
	struct vmm_rs_action bsp4[] = {
		ICR_HI(1),
		ICR(0x200),        /* SMI */
		ICR(0x300 | 0x31), /* remote read */
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1, .value = 4 },
	};
	CHECK_OK(vmm_rs_guest_set_script(v[0], bsp4, 4, -1));
	vme.exitcode = -1;
	CHECK_ERR(vm_run(v[0], &vmrun), EPERM);
	CHECK(vme.exitcode == -1);
	CHECK(kread(v[0], LAPIC_GPA + LAPIC_ICR_LO) == 0x200);
	CHECK_ERR(vm_run(v[0], &vmrun), EPERM);
	CHECK(kread(v[0], LAPIC_GPA + LAPIC_ICR_LO) == 0x331);
	CHECK_OK(vm_run(v[0], &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.eax == 4);
	uint64_t smi = 0x200;
	CHECK_ERR(vm_readwrite_kernemu_device(v[0], LAPIC_GPA + LAPIC_ICR_LO, true, 4, &smi), EPERM);

	for (int i = 0; i < 3; i++)
		vm_vcpu_close(v[i]);
	vm_destroy(ctx);
	return test_finish("ap_start_test");
}
