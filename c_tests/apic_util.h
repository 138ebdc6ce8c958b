/*
 * Helpers for the interrupt tests: IOAPIC and local APIC registers through
 * vm_readwrite_kernemu_device (exactly as guest accesses from a vCPU), and
 * running a vCPU's guest until it halts, without sleeps.
 */
#ifndef VMM_RS_APIC_UTIL_H
#define VMM_RS_APIC_UTIL_H

#include <pthread.h>
#include <sched.h>

#include "vmm_rs.h"
#include "test_util.h"

#define IOAPIC_GPA 0xFEC00000UL
#define LAPIC_GPA 0xFEE00000UL
#define LAPIC_EOI 0xB0
#define LAPIC_SVR 0xF0
#define LAPIC_ISR 0x100
#define LAPIC_TMR 0x180
#define LAPIC_IRR 0x200
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310

#define RTE_LEVEL 0x8000u
#define RTE_REMOTE_IRR 0x4000u
#define RTE_MASKED 0x10000u

static inline uint64_t
kread(struct vcpu *v, uint64_t gpa)
{
	uint64_t val = 0;
	CHECK_OK(vm_readwrite_kernemu_device(v, gpa, false, 4, &val));
	return val;
}

static inline void
kwrite(struct vcpu *v, uint64_t gpa, uint64_t val)
{
	CHECK_OK(vm_readwrite_kernemu_device(v, gpa, true, 4, &val));
}

static inline uint32_t
ioapic_read(struct vcpu *v, uint32_t reg)
{
	kwrite(v, IOAPIC_GPA, reg);
	return (uint32_t)kread(v, IOAPIC_GPA + 0x10);
}

static inline void
ioapic_write(struct vcpu *v, uint32_t reg, uint32_t val)
{
	kwrite(v, IOAPIC_GPA, reg);
	kwrite(v, IOAPIC_GPA + 0x10, val);
}

/* Programs RTE `pin` (as a guest on vCPU `v` would): low then high half. */
static inline void
rte_write(struct vcpu *v, int pin, uint32_t lo, uint32_t dest)
{
	ioapic_write(v, 0x11 + 2 * pin, dest << 24);
	ioapic_write(v, 0x10 + 2 * pin, lo);
}

static inline uint32_t
rte_low(struct vcpu *v, int pin)
{
	return ioapic_read(v, 0x10 + 2 * pin);
}

/* Bit `vector` of the vCPU's 256-bit APIC register at `off` (IRR...). */
static inline int
lapic_bit(struct vcpu *v, uint32_t off, int vector)
{
	return (int)((kread(v, LAPIC_GPA + off + 0x10 * (vector / 32)) >> (vector % 32)) & 1);
}

/* Software-enables the vCPU's local APIC (SVR bit 8). */
static inline void
lapic_enable(struct vcpu *v)
{
	kwrite(v, LAPIC_GPA + LAPIC_SVR, 0x1ff);
}

static inline void
wait_state(struct vcpu *v, int state)
{
	while (vmm_rs_vcpu_state(v) != state)
		sched_yield();
}

static void *
run_once_thread(void *p)
{
	static __thread struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	(void)vm_run(p, &vmrun);
	return NULL;
}

/* Register `r` of vCPU `v` (checked). */
static inline uint64_t
get_reg(struct vcpu *v, int r)
{
	uint64_t val = 0;
	CHECK_OK(vm_get_register(v, r, &val));
	return val;
}

/*
 * Runs the vCPU's guest until it sleeps in HLT (the idle loop takes every
 * deliverable interrupt on the way), then takes it back (REQIDLE).
 */
static inline void
run_until_halted(struct vcpu *v)
{
	pthread_t t;
	uint64_t rip;
	pthread_create(&t, NULL, run_once_thread, v);
	wait_state(v, VCPU_SLEEPING);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RIP, &rip)); /* lock-one: REQIDLE */
	pthread_join(t, NULL);
}

/*
 * Runs a scripted guest on `v`: the `n` actions (at most 31), then an OUT
 * to port 0x80 that ends vm_run (checked). Returns the last value the
 * guest read. The guest then halts with interrupts off.
 */
static inline uint64_t
run_script_to_port80(struct vcpu *v, const struct vmm_rs_action *acts, int n)
{
	struct vmm_rs_action prog[32];
	struct vmm_rs_guest_stats gs = { 0 };
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	CHECK(n >= 0 && n < 32);
	if (n < 0 || n >= 32)
		return 0;
	memcpy(prog, acts, n * sizeof(*acts));
	prog[n] = (struct vmm_rs_action){ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 };
	CHECK_OK(vmm_rs_guest_set_script(v, prog, n + 1, -1));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	return gs.last_read;
}

/*
 * Runs `v`'s guest (as scripted) to its next exit, which must be an OUT to
 * `port` (checked; the exit is left in `*vme`). Returns the last value the
 * guest read.
 */
static inline uint64_t
run_to_out(struct vcpu *v, int port, struct vm_exit *vme)
{
	struct vm_run vmrun = { .vm_exit = vme };
	struct vmm_rs_guest_stats gs = { 0 };
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme->exitcode == VM_EXITCODE_INOUT && vme->u.inout.port == port);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	return gs.last_read;
}

/*
 * A thread body: vm_run on vCPU `arg` until it reports the VM suspended
 * (every active vCPU must get there before any does). Returns NULL then,
 * `arg` if vm_run fails first.
 */
static inline void *
run_to_suspend(void *arg)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	while (vm_run(arg, &vmrun) == 0)
		if (vme.exitcode == VM_EXITCODE_SUSPENDED)
			return NULL;
	return arg;
}

#endif
