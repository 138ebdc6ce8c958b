/*
 * RDMSR and WRMSR from a simulated guest, as bhyve sees them: the local
 * APIC's MSRs are emulated inside VM_RUN (IA32_APIC_BASE always, the
 * x2APIC registers in x2APIC mode, #GP otherwise), other MSRs leave as
 * VM_EXITCODE_RDMSR / VM_EXITCODE_WRMSR, and an RDMSR's value comes from
 * RDX:RAX as bhyve's vmexit_rdmsr sets them. An x2APIC guest takes an
 * interrupt and EOIs it through the MSRs.
 */
#include "apic_util.h"

#define RD(m) { .kind = VMM_RS_ACT_RDMSR, .msr = (m) }
#define WR(m, v) { .kind = VMM_RS_ACT_WRMSR, .msr = (m), .value = (v) }
#define OUT(p) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1 }

static struct vm_exit vme;
static struct vm_run vmrun = { .vm_exit = &vme };

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;
	struct vmm_rs_guest_stats gs;
	uint64_t rax, rdx;

	watchdog_start(60, "msr_test");
	CHECK_OK(vm_create("msr"));
	ctx = vm_open("msr");
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));

	/* xAPIC mode. */
	struct vmm_rs_action xapic[] = {
		RD(0x1b), OUT(0x80),
		RD(0x40000000),
		OUT(0x81),
		WR(0x40000001, 0x1122334455667788ULL),
		RD(0x802), OUT(0x82),
	};
	CHECK_OK(vmm_rs_guest_set_script(v, xapic, 7, 6));
	CHECK(run_to_out(v, 0x80, &vme) == 0xfee00900); /* base, enabled, BSP */
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_RDMSR && vme.u.msr.code == 0x40000000);
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RAX, 0xffffffff89abcdefULL)); /* EAX only counts */
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RDX, 0x01234567));
	CHECK(run_to_out(v, 0x81, &vme) == 0x0123456789abcdefULL);
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_WRMSR && vme.u.msr.code == 0x40000001 &&
	    vme.u.msr.wval == 0x1122334455667788ULL);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RAX, &rax));
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RDX, &rdx));
	CHECK(rax == 0x55667788 && rdx == 0x11223344); /* EDX:EAX, as WRMSR takes it */
	run_to_out(v, 0x82, &vme);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_vector == 13); /* x2APIC MSR in xAPIC mode: #GP */

	/* x2APIC mode: enable through SVR, take an interrupt, EOI it. */
	CHECK_OK(vm_set_x2apic_state(v, X2APIC_ENABLED));
	struct vmm_rs_action x2apic[] = {
		WR(0x80f, 0x1ff), RD(0x802), OUT(0x90),  /* SVR; APIC id */
		{ .kind = VMM_RS_ACT_STI },
		{ .kind = VMM_RS_ACT_COMPUTE },          /* the STI shadow */
		{ .kind = VMM_RS_ACT_COMPUTE },          /* the interrupt arrives */
		RD(0x813), OUT(0x91),                    /* ISR bits 0x60-0x7f */
		WR(0x80b, 0), RD(0x813), OUT(0x92),      /* EOI */
	};
	CHECK_OK(vmm_rs_guest_set_script(v, x2apic, 11, 10));
	CHECK(run_to_out(v, 0x90, &vme) == 0); /* vCPU 0's x2APIC id */
	CHECK_OK(vm_lapic_irq(v, 0x61));
	CHECK(run_to_out(v, 0x91, &vme) == 1u << (0x61 - 0x60));
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_vector == 0x61);
	CHECK(run_to_out(v, 0x92, &vme) == 0);

	/* Counted as FreeBSD counts them. */
	int rd = stat_index(ctx, "number of times rdmsr was intercepted");
	int wr = stat_index(ctx, "number of times wrmsr was intercepted");
	int n = 0;
	uint64_t *st = vm_get_stats(v, NULL, &n);
	CHECK(rd >= 0 && wr >= 0 && st != NULL);
	if (st != NULL && rd >= 0 && wr >= 0)
		CHECK(st[rd] == 6 && st[wr] == 3);

	/* An x2APIC ICR write of an SMI IPI, which the local APIC keeps but
	 * cannot send: userland's WRMSR, as FreeBSD's lapic_wrmsr fails it. */
	struct vmm_rs_action smi[] = { WR(0x830, (1ULL << 32) | 0x200), RD(0x830), OUT(0x84) };
	CHECK_OK(vmm_rs_guest_set_script(v, smi, 3, 2));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_WRMSR && vme.u.msr.code == 0x830 &&
	    vme.u.msr.wval == ((1ULL << 32) | 0x200));
	CHECK(run_to_out(v, 0x84, &vme) == ((1ULL << 32) | 0x200)); /* stored */

	/* bhyve with x86.strictmsr (its default) answers an MSR it does not
	 * know with vm_inject_gp(): #GP(0) at the WRMSR, which is not retried
	 * (the guest's handler takes over; a script goes on). */
	struct vmm_rs_action strict[] = { WR(0x40000002, 1), OUT(0x83) };
	CHECK_OK(vmm_rs_guest_set_script(v, strict, 2, 1));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_WRMSR && vme.u.msr.code == 0x40000002);
	vm_inject_gp(v);
	run_to_out(v, 0x83, &vme);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_vector == 13);
	vm_inject_ud(NULL); /* no return value: errno only */
	CHECK(errno == EFAULT);

	/* A malformed action is still refused; an MSR number is any 32 bits. */
	struct vmm_rs_action odd[] = { RD(0xffffffffu), { .kind = 13 } };
	CHECK_ERR(vmm_rs_guest_set_script(v, odd, 2, -1), EINVAL);
	CHECK_OK(vmm_rs_guest_set_script(v, odd, 1, -1));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_RDMSR && vme.u.msr.code == 0xffffffffu);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("msr_test");
}
