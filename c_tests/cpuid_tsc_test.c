/*
 * CPUID and the TSC from a simulated guest, as a bhyve guest sees them.
 * CPUID never leaves VM_RUN: it is answered as FreeBSD's
 * x86_emulate_cpuid does, with this vCPU's APIC id, the VM's topology,
 * its x2APIC state and capabilities. RDTSC runs in the guest at
 * VMM_RS_TSC_HZ on the host's monotonic clock; a WRMSR of the TSC moves
 * it; RDTSCP and RDPID (always on, as on FreeBSD's VMX backend) read
 * TSC_AUX; VM_REINIT clears what the guest wrote. MONITOR, MWAIT and VMX
 * instructions, which CPUID does not offer, are #UD inside VM_RUN.
 */
#include <pthread.h>
#include <time.h>

#include "apic_util.h"

#define OUT(p) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1 }
#define RD(m) { .kind = VMM_RS_ACT_RDMSR, .msr = (m) }
#define WR(m, v) { .kind = VMM_RS_ACT_WRMSR, .msr = (m), .value = (v) }
#define ACT(k) { .kind = (k) }
#define CPUID(leaf, sub) { .kind = VMM_RS_ACT_CPUID, .value = ((uint64_t)(sub) << 32) | (leaf) }

#define MSR_TSC 0x10
#define MSR_PLATFORM_INFO 0xce
#define MSR_TSC_AUX 0xc0000103u

static struct vm_exit vme;
static struct vm_run vmrun = { .vm_exit = &vme };

static uint64_t
mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* TSC ticks in `ns` nanoseconds. */
static uint64_t
ticks(uint64_t ns)
{
	return ns * (VMM_RS_TSC_HZ / 1000000000u);
}

static int
last_vector(struct vcpu *v)
{
	struct vmm_rs_guest_stats gs = { 0 };
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	return gs.last_vector;
}

/* A callback guest: the CPUIDs in `leaves`, then OUT 0x80 for good. */
struct cpuid_guest {
	uint32_t leaves[4];
	uint32_t got[4][4];
	int done;
};

static int
cpuid_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	struct cpuid_guest *g = cookie;
	(void)vcpuid;
	if (rip < 4) {
		a->kind = VMM_RS_ACT_CPUID;
		a->value = g->leaves[rip];
	} else {
		a->kind = VMM_RS_ACT_PORT_OUT;
		a->port = 0x80;
		a->size = 1;
	}
	return 0;
}

static void
cpuid_result(void *cookie, int vcpuid, const uint32_t *regs)
{
	struct cpuid_guest *g = cookie;
	(void)vcpuid;
	if (g->done < 4)
		memcpy(g->got[g->done++], regs, 4 * sizeof(uint32_t));
}

static void
test_cpuid(struct vmctx *ctx, struct vcpu *v1)
{
	struct cpuid_guest g = { .leaves = { 1, 0x40000000, 0x80000001, 0x40000005 } };
	struct vmm_rs_guest_ops ops = { .next = cpuid_next, .cpuid_result = cpuid_result };

	watchdog_phase("cpuid_tsc_test: CPUID");
	CHECK_OK(vm_set_topology(ctx, 1, 2, 1, 0));
	CHECK_OK(vm_set_x2apic_state(v1, X2APIC_ENABLED));
	CHECK_OK(vmm_rs_guest_set_ops(v1, &ops, &g));
	CHECK_OK(vm_run(v1, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80); /* no exit for CPUID */
	CHECK(g.done == 4);

	/* Leaf 1: APIC id 1, 2 logical processors, hypervisor, x2APIC, no VMX or XSAVE. */
	CHECK(g.got[0][1] >> 24 == 1);
	CHECK(((g.got[0][1] >> 16) & 0xff) == 2);
	CHECK(g.got[0][2] & (1u << 31));
	CHECK(g.got[0][2] & (1u << 21));
	CHECK((g.got[0][2] & ((1u << 3) | (1u << 5) | (1u << 26) | (1u << 27))) == 0); /* MONITOR VMX XSAVE OSXSAVE */
	CHECK((g.got[0][3] & ((1u << 7) | (1u << 12) | (1u << 14))) == ((1u << 7) | (1u << 12) | (1u << 14)));

	/* The VMM leaf, also for leaves past it. */
	for (int i = 1; i <= 3; i += 2) {
		CHECK(g.got[i][0] == 0x40000000);
		CHECK(memcmp(&g.got[i][1], "bhyve bhyve ", 12) == 0);
	}
	/* The last answer is in the registers, upper halves clear. */
	CHECK(get_reg(v1, VM_REG_GUEST_RAX) == g.got[3][0] && get_reg(v1, VM_REG_GUEST_RBX) == g.got[3][1] &&
	    get_reg(v1, VM_REG_GUEST_RCX) == g.got[3][2] && get_reg(v1, VM_REG_GUEST_RDX) == g.got[3][3]);
	CHECK(g.got[2][3] & (1u << 27)); /* RDTSCP: always on, as FreeBSD's VMX */

	/* The x2APIC state and the topology change the answers. */
	CHECK_OK(vm_set_x2apic_state(v1, X2APIC_DISABLED));
	CHECK_OK(vm_set_topology(ctx, 1, 1, 1, 0));
	g.done = 0;
	CHECK_OK(vm_set_register(v1, VM_REG_GUEST_RIP, 0));
	CHECK_OK(vm_run(v1, &vmrun));
	CHECK(g.done == 4);
	CHECK((g.got[0][2] & (1u << 21)) == 0);
	CHECK(((g.got[0][1] >> 16) & 0xff) == 1);

	int st = stat_index(ctx, "number of times cpuid was intercepted");
	int n = 0;
	uint64_t *stats = vm_get_stats(v1, NULL, &n);
	CHECK(st >= 0 && stats != NULL);
	if (st >= 0 && stats != NULL)
		CHECK(stats[st] == 8);
}

static void
test_tsc(struct vcpu *v, uint64_t created)
{
	uint64_t before, after, t1, t2, mid1, mid2;

	watchdog_phase("cpuid_tsc_test: TSC");
	struct vmm_rs_action rdtsc[] = { ACT(VMM_RS_ACT_RDTSC), OUT(0x80) };
	CHECK_OK(vmm_rs_guest_set_script(v, rdtsc, 2, 0));
	/*
	 * The clock runs from before the first VM's first guest entry (on
	 * FreeBSD, from the host's boot): this process's first RDTSC, 1 ms
	 * after the VM was created, reads at least 1 ms of ticks.
	 */
	while (mono_ns() - created < 1000000)
		;
	t1 = run_to_out(v, 0x80, &vme);
	CHECK(t1 >= ticks(1000000));
	CHECK(t1 == ((get_reg(v, VM_REG_GUEST_RDX) << 32) | get_reg(v, VM_REG_GUEST_RAX)));
	CHECK(get_reg(v, VM_REG_GUEST_RDX) >> 32 == 0 && get_reg(v, VM_REG_GUEST_RAX) >> 32 == 0);

	/*
	 * The rate: between two RDTSCs at least a measured 1 ms of host time passes, at most the span of both
	 * runs. (The library's clock and CLOCK_MONOTONIC are the same clock on Linux, where Rust's Instant is it.)
	 */
	before = mono_ns();
	t1 = run_to_out(v, 0x80, &vme);
	mid1 = mono_ns();
	while (mono_ns() - mid1 < 1000000)
		;
	mid2 = mono_ns();
	t2 = run_to_out(v, 0x80, &vme);
	after = mono_ns();
	CHECK(t2 - t1 + 2 >= ticks(mid2 - mid1));
	CHECK(t2 - t1 <= ticks(after - before) + 2);

	/* WRMSR sets it; RDMSR reads it; the platform MSR reports the rate. */
	struct vmm_rs_action wr[] = {
		WR(MSR_TSC, 1ULL << 40), ACT(VMM_RS_ACT_RDTSC), OUT(0x81),
		RD(MSR_TSC), OUT(0x82),
		RD(MSR_PLATFORM_INFO), OUT(0x83),
	};
	CHECK_OK(vmm_rs_guest_set_script(v, wr, 7, -1));
	before = mono_ns();
	t1 = run_to_out(v, 0x81, &vme);
	after = mono_ns();
	CHECK(t1 >= 1ULL << 40 && t1 - (1ULL << 40) <= ticks(after - before) + 2);
	t2 = run_to_out(v, 0x82, &vme);
	CHECK(t2 >= t1 && t2 < (1ULL << 40) + (1ULL << 39));
	uint64_t ratio = VMM_RS_TSC_HZ / 100000000u;
	CHECK(run_to_out(v, 0x83, &vme) == ((ratio << 8) | (ratio << 40)));

	/* RDTSCP and RDPID: on, and fixed, as on FreeBSD's VMX backend. */
	int on = 0;
	CHECK_OK(vm_get_capability(v, VM_CAP_RDTSCP, &on));
	CHECK(on == 1);
	CHECK_OK(vm_get_capability(v, VM_CAP_RDPID, &on));
	CHECK(on == 1);
	CHECK_ERR(vm_set_capability(v, VM_CAP_RDTSCP, 0), ENOENT);
	CHECK_ERR(vm_set_capability(v, VM_CAP_RDPID, 0), ENOENT);

	/* They read TSC_AUX; its reserved bits are #GP. */
	struct vmm_rs_action aux[] = {
		WR(MSR_TSC_AUX, 0x1234), ACT(VMM_RS_ACT_RDTSCP), OUT(0x90),
		ACT(VMM_RS_ACT_RDPID), OUT(0x91),
		WR(MSR_TSC_AUX, 1ULL << 32), OUT(0x92),
		ACT(VMM_RS_ACT_RDPID), OUT(0x93),
	};
	CHECK_OK(vmm_rs_guest_set_script(v, aux, 9, -1));
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RCX, ~0ULL));
	CHECK(run_to_out(v, 0x90, &vme) >= 1ULL << 40); /* the TSC, still offset */
	CHECK(get_reg(v, VM_REG_GUEST_RCX) == 0x1234); /* upper half cleared */
	CHECK(run_to_out(v, 0x91, &vme) == 0x1234);
	CHECK(get_reg(v, VM_REG_GUEST_RAX) == 0x1234);
	CHECK(last_vector(v) == -1);
	run_to_out(v, 0x92, &vme);
	CHECK(last_vector(v) == 13);
	CHECK(run_to_out(v, 0x93, &vme) == 0x1234); /* unchanged by the refused write */
}

/*
 * MONITOR, MWAIT and a VMX instruction: #UD at each, no exit, as
 * FreeBSD's vm_run. Each completes nothing, so RIP stays where the first
 * was (the script goes on, as a #UD handler that skips the instruction).
 */
static void
test_refused(struct vcpu *v)
{
	struct vmm_rs_action ud[] = {
		ACT(VMM_RS_ACT_MONITOR), ACT(VMM_RS_ACT_MWAIT), ACT(VMM_RS_ACT_VMX_INSN), OUT(0x80),
	};
	struct vmm_rs_guest_stats gs = { 0 };

	watchdog_phase("cpuid_tsc_test: #UD");
	CHECK_OK(vmm_rs_guest_set_script(v, ud, 4, -1));
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RIP, 0x1000));
	run_to_out(v, 0x80, &vme);
	CHECK(vme.rip == 0x1000);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.interrupts == 3 && gs.last_vector == 6);
	struct vmm_rs_action bad = { .kind = VMM_RS_ACT_VMX_INSN + 1 };
	CHECK_ERR(vmm_rs_guest_set_script(v, &bad, 1, -1), EINVAL);
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v0, *v1;

	watchdog_start(60, "cpuid_tsc_test");
	ctx = open_vm_with_two_vcpus("cpuid_tsc", &v0, &v1);
	uint64_t created = mono_ns();
	if (ctx == NULL)
		return test_finish("cpuid_tsc_test");

	test_cpuid(ctx, v1);
	test_tsc(v0, created);
	test_refused(v0);

	/* VM_REINIT: the offset and TSC_AUX go. */
	watchdog_phase("cpuid_tsc_test: VM_REINIT");
	pthread_t t;
	void *bad = v1;
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
	CHECK(pthread_create(&t, NULL, run_to_suspend, v1) == 0);
	CHECK_OK(vm_run(v0, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED);
	CHECK(pthread_join(t, &bad) == 0 && bad == NULL);
	CHECK_OK(vm_reinit(ctx));
	CHECK_OK(vm_activate_cpu(v0));
	struct vmm_rs_action after[] = { ACT(VMM_RS_ACT_RDTSC), OUT(0x80), ACT(VMM_RS_ACT_RDPID), OUT(0x81) };
	CHECK_OK(vmm_rs_guest_set_script(v0, after, 4, -1));
	CHECK(run_to_out(v0, 0x80, &vme) < 1ULL << 40);
	CHECK(run_to_out(v0, 0x81, &vme) == 0);

	/* A CPUID action takes any leaf and subleaf. */
	struct vmm_rs_action any[] = { CPUID(0xffffffffu, 0xffffffffu), OUT(0x80) };
	CHECK_OK(vmm_rs_guest_set_script(v0, any, 2, -1));
	run_to_out(v0, 0x80, &vme);

	/*
	 * The subleaf (bits 63:32) reaches CPUID: leaf 7 subleaf 0 has RDPID
	 * (always on), subleaf 1 is empty. (A host whose highest leaf is below
	 * 7 answers that leaf for it; a host without CPUID, such as aarch64,
	 * has a bare model's leaves up to 7.)
	 */
	struct vmm_rs_action sub[] = { CPUID(0, 0), OUT(0x80), CPUID(7, 0), OUT(0x81), CPUID(7, 1), OUT(0x82) };
	CHECK_OK(vmm_rs_guest_set_script(v0, sub, 6, -1));
	run_to_out(v0, 0x80, &vme);
	uint64_t high = get_reg(v0, VM_REG_GUEST_RAX);
	run_to_out(v0, 0x81, &vme);
	uint64_t ecx0 = get_reg(v0, VM_REG_GUEST_RCX);
	run_to_out(v0, 0x82, &vme);
	CHECK(get_reg(v0, VM_REG_GUEST_RCX) == 0);
	if (high >= 7)
		CHECK(ecx0 & (1u << 22));

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
	return test_finish("cpuid_tsc_test");
}
