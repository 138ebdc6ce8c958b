/*
 * The vioapic and local APICs through the ioctl face and
 * vm_readwrite_kernemu_device: registers and read-only bits, a level
 * interrupt from assert to EOI and re-delivery, coalescing, saturation,
 * masking and trigger changes, MSI, LAPIC IRQs, x2APIC state, ISA pins,
 * and the rule that mask-only RTE writes do no cross-vCPU work.
 */
#include "apic_util.h"

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v0, *v1;
	struct vmm_rs_ioapic_stats st;
	int pins;

	watchdog_start(60, "ioapic_test");
	CHECK_OK(vm_create("ioapic"));
	ctx = vm_open("ioapic");
	v0 = vm_vcpu_open(ctx, 0);
	v1 = vm_vcpu_open(ctx, 1);
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_activate_cpu(v1));
	lapic_enable(v0);
	lapic_enable(v1);

	/* Pins, ID/VER/ARB, reset values, read-only bits. */
	CHECK_OK(vm_ioapic_pincount(ctx, &pins));
	CHECK(pins == 32);
	CHECK_ERR(vm_ioapic_assert_irq(ctx, 32), EINVAL);
	CHECK_ERR(vm_ioapic_assert_irq(ctx, -1), EINVAL);
	CHECK(ioapic_read(v0, 0x01) == ((31u << 16) | 0x11));
	ioapic_write(v0, 0x00, 0x0fabcdef);
	CHECK(ioapic_read(v0, 0x00) == 0x0f000000);
	CHECK(ioapic_read(v0, 0x02) == 0x0f000000);
	CHECK(rte_low(v0, 3) == 0x00010000);
	CHECK(ioapic_read(v0, 0x11 + 2 * 3) == 0x00010000); /* reset 0x0001000000010000 */
	ioapic_write(v0, 0x10 + 2 * 3, RTE_REMOTE_IRR | 0x1000 | 0x33); /* RO bits */
	CHECK(rte_low(v0, 3) == 0x33);
	{
		uint64_t val = 0x12;
		/* Only 4-byte accesses do anything: a 2-byte IOREGSEL write is ignored. */
		CHECK_OK(vm_readwrite_kernemu_device(v0, IOAPIC_GPA, true, 2, &val));
		CHECK(kread(v0, IOAPIC_GPA) == 0x10 + 2 * 3);
		CHECK_ERR(vm_readwrite_kernemu_device(v0, 0x1000, false, 4, &val), EINVAL);
		CHECK_ERR(vm_readwrite_kernemu_device(v0, IOAPIC_GPA, false, 3, &val), EINVAL);
		CHECK_ERR(vm_readwrite_kernemu_device(v0, IOAPIC_GPA, false, 4, NULL), EFAULT);
	}

	/* A level interrupt, vector 0x45, pin 5, to vCPU 0. */
	rte_write(v0, 5, RTE_LEVEL | 0x45, 0);
	run_until_halted(v0); /* applies the staged TMR change */
	CHECK(lapic_bit(v0, LAPIC_TMR, 0x45) == 1);
	CHECK_OK(vm_ioapic_assert_irq(ctx, 5));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x45) == 1);
	CHECK((rte_low(v0, 5) & RTE_REMOTE_IRR) != 0);
	CHECK_OK(vm_ioapic_assert_irq(ctx, 5)); /* count 2: no second send */
	CHECK_OK(vm_ioapic_deassert_irq(ctx, 5)); /* count 1 */
	CHECK_OK(vmm_rs_ioapic_stats(ctx, &st));
	CHECK(st.interrupts == 1);

	run_until_halted(v0); /* the guest takes it: IRR -> ISR */
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x45) == 0);
	CHECK(lapic_bit(v0, LAPIC_ISR, 0x45) == 1);
	/* EOI while the pin is still asserted: remote IRR clears, then re-sent. */
	kwrite(v0, LAPIC_GPA + LAPIC_EOI, 0);
	CHECK(lapic_bit(v0, LAPIC_ISR, 0x45) == 0);
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x45) == 1);
	CHECK((rte_low(v0, 5) & RTE_REMOTE_IRR) != 0);
	CHECK_OK(vmm_rs_ioapic_stats(ctx, &st));
	CHECK(st.interrupts == 2);
	/* Deassert, take it, EOI: nothing more until re-asserted. */
	CHECK_OK(vm_ioapic_deassert_irq(ctx, 5));
	CHECK_ERR(vm_ioapic_deassert_irq(ctx, 5), ERANGE);
	run_until_halted(v0);
	kwrite(v0, LAPIC_GPA + LAPIC_EOI, 0);
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x45) == 0 && lapic_bit(v0, LAPIC_ISR, 0x45) == 0);
	CHECK((rte_low(v0, 5) & RTE_REMOTE_IRR) == 0);
	CHECK_OK(vm_ioapic_pulse_irq(ctx, 5));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x45) == 1);
	CHECK_OK(vmm_rs_ioapic_stats(ctx, &st));
	CHECK(st.interrupts == 3 && st.saturate_low == 1);

	/* Masking keeps remote IRR; switching to edge clears it. */
	CHECK((rte_low(v0, 5) & RTE_REMOTE_IRR) != 0);
	uint64_t updates = st.tmr_updates, block_runs = st.tmr_block_runs;
	rte_write(v0, 5, RTE_MASKED | RTE_LEVEL | 0x45, 0);
	CHECK((rte_low(v0, 5) & RTE_REMOTE_IRR) != 0);
	CHECK_OK(vmm_rs_ioapic_stats(ctx, &st));
	CHECK(st.tmr_updates == updates && st.tmr_block_runs == block_runs);
	rte_write(v0, 5, RTE_MASKED | 0x45, 0);
	CHECK((rte_low(v0, 5) & RTE_REMOTE_IRR) == 0);

	/* A level entry aimed at vCPU 1, written from vCPU 0: TMR staged there. */
	rte_write(v0, 7, RTE_LEVEL | 0x57, 1);
	CHECK(lapic_bit(v1, LAPIC_TMR, 0x57) == 0); /* staged, not applied */
	run_until_halted(v1);
	CHECK(lapic_bit(v1, LAPIC_TMR, 0x57) == 1);
	CHECK_OK(vmm_rs_ioapic_stats(ctx, &st));
	CHECK(st.tmr_updates > updates && st.tmr_stagings > 0);

	/* MSI to vCPU 1 (destination ID 1, physical). */
	CHECK_OK(vm_lapic_msi(ctx, 0xFEE00000u | (1u << 12), 0x62));
	CHECK(lapic_bit(v1, LAPIC_IRR, 0x62) == 1);
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x62) == 0);
	CHECK_ERR(vm_lapic_msi(ctx, 0xFED00000u, 0x62), EINVAL);

	/* LAPIC IRQ and NMI. */
	CHECK_OK(vm_lapic_irq(v0, 0x70));
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x70) == 1);
	CHECK_ERR(vm_lapic_irq(v0, 15), EINVAL);
	CHECK_ERR(vm_lapic_irq(v0, 256), EINVAL);
	{
		struct vm_lapic_irq li = { .cpuid = 16, .vector = 0x70 };
		CHECK_ERR(vmm_ioctl(ctx, VM_LAPIC_IRQ, &li), EINVAL);
		struct vm_nmi nmi = { .cpuid = 99 };
		CHECK_ERR(vmm_ioctl(ctx, VM_INJECT_NMI, &nmi), EINVAL);
	}
	CHECK_OK(vm_inject_nmi(v1));

	/* x2APIC state. */
	{
		enum x2apic_state s = X2APIC_STATE_LAST;
		CHECK_OK(vm_get_x2apic_state(v0, &s));
		CHECK(s == X2APIC_DISABLED);
		CHECK_OK(vm_set_x2apic_state(v0, X2APIC_ENABLED));
		CHECK_OK(vm_get_x2apic_state(v0, &s));
		CHECK(s == X2APIC_ENABLED);
		CHECK_ERR(vm_set_x2apic_state(v0, 7), EINVAL);
		CHECK_OK(vm_set_x2apic_state(v0, X2APIC_DISABLED));
	}

	/* ISA pins drive their IOAPIC pin (-1 = none); the 8259 side is checked only. */
	rte_write(v0, 4, 0x44, 1); /* edge, unmasked, vCPU 1 */
	CHECK_OK(vm_isa_pulse_irq(ctx, 4, 4));
	CHECK(lapic_bit(v1, LAPIC_IRR, 0x44) == 1);
	CHECK_OK(vm_isa_assert_irq(ctx, 3, -1));
	CHECK_OK(vm_isa_deassert_irq(ctx, 3, -1));
	CHECK_ERR(vm_isa_assert_irq(ctx, 16, 4), EINVAL);

	/* ISA trigger modes (the 8259's ELCR), as FreeBSD vatpic_set_irq_trigger. */
	CHECK_OK(vm_isa_set_irq_trigger(ctx, 10, LEVEL_TRIGGER));
	CHECK_OK(vm_isa_set_irq_trigger(ctx, 10, EDGE_TRIGGER));
	CHECK_OK(vm_isa_set_irq_trigger(ctx, 2, EDGE_TRIGGER));
	{
		const int edge_only[] = { 0, 1, 2, 8, 13 };
		for (size_t i = 0; i < sizeof(edge_only) / sizeof(edge_only[0]); i++)
			CHECK_ERR(vm_isa_set_irq_trigger(ctx, edge_only[i], LEVEL_TRIGGER), EINVAL);
	}
	CHECK_ERR(vm_isa_set_irq_trigger(ctx, 16, EDGE_TRIGGER), EINVAL);
	CHECK_ERR(vm_isa_set_irq_trigger(ctx, -1, EDGE_TRIGGER), EINVAL);
	CHECK_ERR(vm_isa_set_irq_trigger(ctx, 5, 7), EINVAL);
	CHECK_ERR(vm_isa_set_irq_trigger(NULL, 5, EDGE_TRIGGER), EFAULT);
	{
		struct vm_isa_irq_trigger t = { .atpic_irq = 11, .trigger = LEVEL_TRIGGER };
		CHECK_OK(vmm_ioctl(ctx, VM_ISA_SET_IRQ_TRIGGER, &t));
		t.atpic_irq = 13;
		CHECK_ERR(vmm_ioctl(ctx, VM_ISA_SET_IRQ_TRIGGER, &t), EINVAL);
	}

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
	return test_finish("ioapic_test");
}
