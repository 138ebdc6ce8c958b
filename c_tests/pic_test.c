/*
 * The 8259 pair (FreeBSD vatpic.c) as bhyve's device models and a legacy
 * guest see it: the guest initialises it on ports 0x20/0x21 and 0xa0/0xa1,
 * ISA IRQs from vm_isa_pulse_irq reach a halted guest as the 8259's
 * vectors (through LINT0 of a disabled APIC, or IOAPIC pin 0 in ExtINT
 * mode), vm_isa_set_irq_trigger shows in the ELCR at 0x4d0/0x4d1, and a
 * level IRQ's request follows its line.
 */
#include "apic_util.h"

static struct vm_exit vme;
static struct vm_run vmrun = { .vm_exit = &vme };

#define OUT(p, v) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1, .value = (v) }
#define IN(p, n) { .kind = VMM_RS_ACT_PORT_IN, .port = (p), .size = (n) }
#define ACT(k) { .kind = VMM_RS_ACT_##k }

/* ICW1-4 on both chips (vectors 0x20 and 0x28), then the masks. */
#define INIT_8259(mask1, mask2)                                            \
	OUT(0x20, 0x11), OUT(0x21, 0x20), OUT(0x21, 0x04), OUT(0x21, 0x01),  \
	OUT(0xa0, 0x11), OUT(0xa1, 0x28), OUT(0xa1, 0x02), OUT(0xa1, 0x01),  \
	OUT(0x21, (mask1)), OUT(0xa1, (mask2))

struct script_run {
	struct vcpu *v;
	const struct vmm_rs_action *acts;
	int n;
};

static void *
script_thread(void *p)
{
	struct script_run *r = p;
	run_script_to_port80(r->v, r->acts, r->n);
	return NULL;
}

#define NACTS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/*
 * Runs `acts` (which halt once with interrupts on) on another thread,
 * pulses ISA IRQ `irq` once the guest sleeps, and returns the guest's
 * statistics (the vector it took, the last value it read).
 */
static struct vmm_rs_guest_stats
halt_and_pulse(struct vmctx *ctx, struct vcpu *v, const struct vmm_rs_action *acts, int n, int irq)
{
	struct script_run r = { v, acts, n };
	struct vmm_rs_guest_stats gs = { 0 };
	pthread_t t;
	pthread_create(&t, NULL, script_thread, &r);
	wait_state(v, VCPU_SLEEPING);
	CHECK_OK(vm_isa_pulse_irq(ctx, irq, -1));
	pthread_join(t, NULL);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	return gs;
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;

	watchdog_start(60, "pic_test");
	CHECK_OK(vm_create("pic"));
	ctx = vm_open("pic");
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));

	watchdog_phase("pic_test 1: ISA ioctls and refused accesses");
	CHECK_ERR(vm_isa_pulse_irq(ctx, 16, -1), EINVAL);
	CHECK_ERR(vm_isa_assert_irq(ctx, -1, 4), EINVAL);
	CHECK_ERR(vm_isa_deassert_irq(ctx, 4, 4), ERANGE);
	CHECK_ERR(vm_isa_set_irq_trigger(ctx, 8, LEVEL_TRIGGER), EINVAL);
	CHECK_OK(vm_isa_set_irq_trigger(ctx, 11, LEVEL_TRIGGER));
	{
		struct vmm_rs_action elcr[] = { IN(0x4d1, 1) };
		CHECK(run_script_to_port80(v, elcr, NACTS(elcr)) == 0x08);
		/* Only single bytes; only cascade mode with ICW4. */
		struct vmm_rs_action wide[] = { IN(0x21, 2) };
		CHECK_OK(vmm_rs_guest_set_script(v, wide, 1, -1));
		CHECK_ERR(vm_run(v, &vmrun), EIO);
		struct vmm_rs_action single[] = { OUT(0x20, 0x13) };
		CHECK_OK(vmm_rs_guest_set_script(v, single, 1, -1));
		CHECK_ERR(vm_run(v, &vmrun), EIO);
	}

	/* The APIC is software-disabled from reset: LINT0 is the INTR pin. */
	watchdog_phase("pic_test 2: IRQ 4 wakes a guest in 8259 mode");
	{
		struct vmm_rs_action prog[] = {
			INIT_8259(0xeb, 0xff), ACT(STI), ACT(HLT), ACT(CLI), OUT(0x20, 0x0b), IN(0x20, 1),
		};
		struct vmm_rs_guest_stats gs = halt_and_pulse(ctx, v, prog, NACTS(prog), 4);
		CHECK(gs.last_vector == 0x24);
		CHECK(gs.last_read == 0x10); /* IRQ 4 in service (ISR read) */
		struct vmm_rs_action eoi[] = { OUT(0x20, 0x20), IN(0x20, 1) };
		CHECK(run_script_to_port80(v, eoi, NACTS(eoi)) == 0);
	}

	watchdog_phase("pic_test 3: a slave IRQ through IOAPIC pin 0 (ExtINT)");
	lapic_enable(v);
	rte_write(v, 0, 0x700, 0);
	{
		struct vmm_rs_action prog[] = {
			INIT_8259(0xfb, 0xfd), ACT(STI), ACT(HLT), OUT(0xa0, 0x20), OUT(0x20, 0x20), ACT(CLI),
		};
		CHECK(halt_and_pulse(ctx, v, prog, NACTS(prog), 9).last_vector == 0x29);
	}

	/* IRQ 11 is level (phase 1): its request follows the line. */
	watchdog_phase("pic_test 4: a level IRQ's request follows its line");
	{
		struct vmm_rs_action irr[] = { OUT(0xa0, 0x0a), IN(0xa0, 1) };
		CHECK_OK(vm_isa_assert_irq(ctx, 11, 11));
		CHECK((run_script_to_port80(v, irr, NACTS(irr)) & 0x08) == 0x08);
		CHECK_OK(vm_isa_deassert_irq(ctx, 11, 11));
		CHECK((run_script_to_port80(v, irr, NACTS(irr)) & 0x08) == 0);
	}

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("pic_test");
}
