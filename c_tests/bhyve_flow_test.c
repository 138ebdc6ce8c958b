/*
 * bhyve(8)'s way through the library, end to end, as its main() and
 * vm_loop() go (FreeBSD 14): parse -m, create and open the VM, limit its
 * rights, set the topology and capabilities, set up memory, map a boot
 * ROM, fill the RTC's NVRAM, route a PCI INTx level on the 8259, reset
 * the BSP and run it. Its guest, a legacy OS in 8259 mode, probes an MSR
 * bhyve does not know (vmexit_rdmsr/wrmsr: reads 0, writes ignored),
 * programs a device register in a PCI memory BAR (vmexit_inst_emul: the
 * decoded instruction, emulated against the device), prints a byte
 * on COM1 (userland emulates the UART and raises IRQ 4), halts until IRQ 4
 * arrives through the 8259, starts the AP with INIT/SIPI (userland's
 * spinup_ap: vcpu_reset, CS from the vector, resume), waits for the AP's
 * interrupt, and powers off through the ACPI PM1 control port (userland:
 * vm_suspend). Every vCPU ends with VM_EXITCODE_SUSPENDED.
 */
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "apic_util.h"

#define MB (1024UL * 1024)
#define GB (1024UL * MB)
#define COM1 0x3f8
#define PM1_CNT 0x404 /* bhyve's ACPI PM1a control */
#define POST 0x80
#define BAR_REG 0xc0001000UL /* a register in a PCI device's memory BAR */

#define OUT(p, v) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1, .value = (v) }
#define ACT(k) { .kind = VMM_RS_ACT_##k }
#define ICR(v) { .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = LAPIC_GPA + LAPIC_ICR_LO, .size = 4, .value = (v) }
#define ICR_HI(d) { .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = LAPIC_GPA + LAPIC_ICR_HI, .size = 4, .value = (uint64_t)(d) << 24 }

static struct vmctx *ctx;
static struct vcpu *bsp, *ap;

/* What userland saw, and the AP's start-up handshake. */
static pthread_mutex_t mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ap_started, ap_posted, uart_byte = -1;

static void *
ap_loop(void *arg)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	(void)arg;
	for (;;) {
		if (vm_run(ap, &vmrun) != 0)
			return NULL;
		switch (vme.exitcode) {
		case VM_EXITCODE_DEBUG:
			/* Held until the BSP starts us (bhyve: gdb_cpu_suspend). */
			pthread_mutex_lock(&mtx);
			while (!ap_started)
				pthread_cond_wait(&cv, &mtx);
			pthread_mutex_unlock(&mtx);
			break;
		case VM_EXITCODE_INOUT:
			if (vme.u.inout.port == POST) {
				pthread_mutex_lock(&mtx);
				ap_posted = 1;
				pthread_mutex_unlock(&mtx);
				/* A device raises IRQ 4 again: it wakes the BSP. */
				CHECK_OK(vm_isa_pulse_irq(ctx, 4, 4));
			}
			break;
		case VM_EXITCODE_SUSPENDED:
			return NULL;
		case VM_EXITCODE_BOGUS:
		case VM_EXITCODE_REQIDLE:
			break;
		default:
			CHECK(0 && "AP: unexpected exit code");
			break;
		}
	}
}

/* bhyve's spinup_ap: the AP starts at vector << 12 in real mode. */
static void
spinup_ap(struct vcpu *newcpu, uint64_t rip)
{
	uint64_t base;
	uint32_t limit, access;
	CHECK_OK(vcpu_reset(newcpu));
	CHECK_OK(vm_get_desc(newcpu, VM_REG_GUEST_CS, &base, &limit, &access));
	CHECK_OK(vm_set_desc(newcpu, VM_REG_GUEST_CS, rip, limit, access));
	CHECK_OK(vm_set_register(newcpu, VM_REG_GUEST_CS, (rip >> 12) << 8));
	CHECK_OK(vm_set_register(newcpu, VM_REG_GUEST_RIP, 0));
	CHECK_OK(vm_resume_cpu(newcpu));
	pthread_mutex_lock(&mtx);
	ap_started = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mtx);
}

int
main(void)
{
	size_t memsize = 0;
	int tmp;
	pthread_t apt;

	watchdog_start(60, "bhyve_flow_test");
	/* main(): -m 256M, the VM, its rights, topology and capabilities. */
	CHECK_OK(vm_parse_memsize("256M", &memsize));
	CHECK(memsize == 256 * MB);
	CHECK_OK(vm_create("bhyve-flow"));
	ctx = vm_open("bhyve-flow");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("bhyve_flow_test");
	CHECK_OK(vm_limit_rights(ctx));
	CHECK_OK(vm_set_topology(ctx, 1, 2, 1, 0));
	bsp = vm_vcpu_open(ctx, 0);
	ap = vm_vcpu_open(ctx, 1);
	CHECK_OK(vm_get_capability(bsp, VM_CAP_HALT_EXIT, &tmp));
	CHECK_OK(vm_set_capability(bsp, VM_CAP_HALT_EXIT, 1));
	vm_set_memflags(ctx, 0);
	CHECK_OK(vm_setup_memory(ctx, memsize, VM_MMAP_ALL));

	/* init_bootrom: the ROM ends at 4 GiB. */
	char *rom = vm_create_devmem(ctx, VM_BOOTROM, "bootrom", 2 * MB);
	CHECK(rom != MAP_FAILED);
	if (rom != MAP_FAILED) {
		memset(rom, 0xf4, 2 * MB); /* hlt */
		CHECK_OK(vm_mmap_memseg(ctx, 4 * GB - 2 * MB, VM_BOOTROM, 0, 2 * MB, PROT_READ | PROT_EXEC));
	}

	/* rtc_init: memory above 16 MiB in 64 KiB units, and the time. */
	size_t lomem = (vm_get_lowmem_size(ctx) - 16 * MB) / (64 * 1024);
	CHECK_OK(vm_rtc_write(ctx, 0x34, lomem & 0xff));
	CHECK_OK(vm_rtc_write(ctx, 0x35, lomem >> 8));
	CHECK_OK(vm_rtc_settime(ctx, time(NULL)));
	uint8_t b = 0;
	CHECK_OK(vm_rtc_read(ctx, 0x35, &b));
	CHECK(b == ((240 * MB / (64 * 1024)) >> 8));

	/* The HPET's ACPI table, and pci_lpc routing a PCI INTx to IRQ 11. */
	uint32_t hpet = 0;
	CHECK_OK(vm_get_hpet_capabilities(ctx, &hpet));
	CHECK(hpet != 0);
	CHECK_OK(vm_isa_set_irq_trigger(ctx, 11, LEVEL_TRIGGER));

	/* The BSP from the ROM; the AP active but held until started. */
	CHECK_OK(vcpu_reset(bsp));
	CHECK_OK(vm_activate_cpu(bsp));
	CHECK_OK(vm_activate_cpu(ap));
	CHECK_OK(vm_suspend_cpu(ap));
	struct vmm_rs_action ap_prog[] = { OUT(POST, 0xa5), ACT(CLI), ACT(HLT) };
	CHECK_OK(vmm_rs_guest_set_script(ap, ap_prog, 3, -1));
	struct vmm_rs_action bsp_prog[] = {
		{ .kind = VMM_RS_ACT_RDMSR, .msr = 0x40000000 },
		{ .kind = VMM_RS_ACT_WRMSR, .msr = 0x40000000, .value = 1 },
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = BAR_REG, .size = 4, .value = 0x5a5a },
		{ .kind = VMM_RS_ACT_MMIO_READ, .gpa = BAR_REG, .size = 4 },
		/* The 8259: vectors 0x20/0x28, only IRQ 4 unmasked. */
		OUT(0x20, 0x11), OUT(0x21, 0x20), OUT(0x21, 0x04), OUT(0x21, 0x01),
		OUT(0xa0, 0x11), OUT(0xa1, 0x28), OUT(0xa1, 0x02), OUT(0xa1, 0x01),
		OUT(0x21, 0xef), OUT(0xa1, 0xff),
		/* sti; hlt waits for an interrupt, pending or not (the STI
		 * shadow); the handler EOIs at the 8259. */
		OUT(COM1, 'A'), ACT(STI), ACT(HLT), OUT(0x20, 0x20), ACT(CLI),
		ICR_HI(1), ICR(0x4500), ICR(0x069F), /* INIT, STARTUP 0x9F000 */
		ACT(STI), ACT(HLT), OUT(0x20, 0x20),
		OUT(PM1_CNT, 0x20 | (5 << 10) >> 8), /* SLP_EN | S5 (high byte) */
		ACT(HLT),
	};
	CHECK_OK(vmm_rs_guest_set_script(bsp, bsp_prog, (int)(sizeof(bsp_prog) / sizeof(bsp_prog[0])), -1));
	pthread_create(&apt, NULL, ap_loop, NULL);

	/* vm_loop for the BSP. */
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	int spinups = 0, suspended = 0, unknown = 0, msrs = 0, unexpected = 0;
	uint32_t bar_reg = 0;
	while (!suspended) {
		if (vm_run(bsp, &vmrun) != 0) {
			CHECK(0 && "vm_run failed");
			break;
		}
		switch (vme.exitcode) {
		case VM_EXITCODE_INOUT:
			if (vme.u.inout.port == COM1) {
				uart_byte = (int)(vme.u.inout.eax & 0xff);
				/* The UART's transmit interrupt: IRQ 4 (edge). */
				CHECK_OK(vm_isa_pulse_irq(ctx, 4, 4));
			} else if (vme.u.inout.port == PM1_CNT) {
				CHECK_OK(vm_suspend(ctx, VM_SUSPEND_POWEROFF));
			} else {
				unknown++;
			}
			break;
		case VM_EXITCODE_RDMSR:
			/* Not one bhyve emulates: 0 (without x86.strictmsr). */
			CHECK_OK(vm_set_register(bsp, VM_REG_GUEST_RAX, 0));
			CHECK_OK(vm_set_register(bsp, VM_REG_GUEST_RDX, 0));
			msrs++;
			break;
		case VM_EXITCODE_WRMSR:
			msrs++;
			break;
		case VM_EXITCODE_INST_EMUL: {
			/* emulate_mem -> vmm_emulate_instruction: a decoded MOV. */
			const struct vie *vie = &vme.u.inst_emul.vie;
			uint64_t rax = 0;
			CHECK(vie->decoded && vme.u.inst_emul.gpa == BAR_REG && vie->opsize == 4);
			if (vie->op.op_byte == 0x89) {
				CHECK_OK(vm_get_register(bsp, VM_REG_GUEST_RAX, &rax));
				bar_reg = (uint32_t)rax;
			} else if (vie->op.op_byte == 0x8b) {
				CHECK_OK(vm_set_register(bsp, VM_REG_GUEST_RAX, bar_reg | 0x80000000u));
			} else {
				unexpected++;
			}
			break;
		}
		case VM_EXITCODE_SPINUP_AP:
			CHECK(vme.u.spinup_ap.vcpu == 1 && vme.u.spinup_ap.rip == 0x9F000);
			spinup_ap(ap, vme.u.spinup_ap.rip);
			spinups++;
			break;
		case VM_EXITCODE_SUSPENDED:
			CHECK(vme.u.suspended.how == VM_SUSPEND_POWEROFF);
			suspended = 1;
			break;
		case VM_EXITCODE_BOGUS:
		case VM_EXITCODE_REQIDLE:
			break;
		default:
			/* bhyve: "vm_loop: unexpected exitcode", exit(4). */
			unexpected++;
			break;
		}
	}
	pthread_join(apt, NULL);
	CHECK(unexpected == 0 && msrs == 2 && bar_reg == 0x5a5a);

	/* Everything the guest did reached the right place once. */
	struct vmm_rs_guest_stats gs;
	uint64_t cs = 0;
	CHECK(uart_byte == 'A' && spinups == 1 && unknown == 0 && ap_posted);
	CHECK_OK(vmm_rs_guest_stats(bsp, &gs));
	CHECK(gs.interrupts == 2 && gs.last_vector == 0x24);
	CHECK(gs.last_read == (0x5a5a | 0x80000000u)); /* the BAR read, as the device answered */
	CHECK_OK(vm_get_register(ap, VM_REG_GUEST_CS, &cs));
	CHECK(cs == 0x9F00);
	int n = 0;
	uint64_t *st = vm_get_stats(bsp, NULL, &n);
	CHECK(st != NULL);
	for (int i = 0; st != NULL && i < n; i++) {
		const char *d = vm_get_stat_desc(ctx, i);
		if (d != NULL && strcmp(d, "number of ExtINTs delivered to vcpu") == 0)
			CHECK(st[i] == 2);
	}

	vm_vcpu_close(bsp);
	vm_vcpu_close(ap);
	vm_destroy(ctx);
	return test_finish("bhyve_flow_test");
}
