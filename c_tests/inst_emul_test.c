/*
 * Guest MMIO to a userland device the way FreeBSD 14's bhyve handles it:
 * VM_EXITCODE_INST_EMUL with the instruction already decoded, executed by
 * an instruction emulator (here a small one doing what FreeBSD's
 * vmm_emulate_instruction does for MOV) against the device, with the
 * value in RAX. Also: the paging state the exit reports in real and long
 * mode, and vmm_rs_set_mmio_exitcode switching to the illumos-style form.
 */
#include "vmm_rs.h"
#include "test_util.h"

#define DEV_GPA 0xd0000000UL
#define VIE_OP_TYPE_MOV 1 /* FreeBSD vmm_instruction_emul.c */

/* A device of 64-bit registers, one per 8 bytes. */
static uint64_t dev_regs[4];

/*
 * FreeBSD's emulate_mov for the opcodes a MOV between a general register
 * and memory has: a store takes the register's low bytes, a load merges
 * a byte or word into the register and zero-extends a doubleword.
 */
static int
emulate_mov(struct vcpu *v, const struct vm_exit *vme)
{
	const struct vie *vie = &vme->u.inst_emul.vie;
	uint64_t gpa = vme->u.inst_emul.gpa, rax;
	int size = vie->op.op_byte == 0x88 || vie->op.op_byte == 0x8a ? 1 : vie->opsize;
	uint64_t mask = size == 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
	uint64_t *reg = &dev_regs[(gpa - DEV_GPA) / 8];

	if (!vie->decoded || vie->op.op_type != VIE_OP_TYPE_MOV || vie->reg != 0 ||
	    gpa < DEV_GPA || gpa >= DEV_GPA + sizeof(dev_regs))
		return -1;
	if (vm_get_register(v, VM_REG_GUEST_RAX, &rax) != 0)
		return -1;
	switch (vie->op.op_byte) {
	case 0x88:
	case 0x89:
		*reg = rax & mask;
		return 0;
	case 0x8a:
	case 0x8b:
		rax = size >= 4 ? (*reg & mask) : ((rax & ~mask) | (*reg & mask));
		return vm_set_register(v, VM_REG_GUEST_RAX, rax);
	}
	return -1;
}

/* Runs to the next exit, which must be INST_EMUL at `gpa`, and emulates it. */
static void
emulate_next(struct vcpu *v, uint64_t gpa, int opsize, int op_byte)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	uint64_t rip;

	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INST_EMUL && vme.u.inst_emul.gpa == gpa);
	CHECK(vme.u.inst_emul.vie.opsize == opsize && vme.u.inst_emul.vie.op.op_byte == op_byte);
	/*
	 * RIP reads the start of the instruction, inst_length its length; the
	 * next VM_RUN resumes past it (FreeBSD's kernel keeps the next RIP
	 * itself), so the emulator does not move RIP.
	 */
	CHECK(vme.inst_length == vme.u.inst_emul.vie.num_processed && vme.inst_length > 0);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RIP, &rip));
	CHECK(rip == vme.rip);
	CHECK_OK(emulate_mov(v, &vme));
}

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct vmm_rs_guest_stats gs;

	watchdog_start(60, "inst_emul_test");
	CHECK_OK(vm_create("inst_emul"));
	ctx = vm_open("inst_emul");
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));

	/* Real mode (the power-on state): 16-bit addressing, CS base. */
	CHECK_OK(vcpu_reset(v));
	struct vmm_rs_action store[] = {
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = DEV_GPA, .size = 4, .value = 0x12345678 },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 },
	};
	CHECK_OK(vmm_rs_guest_set_script(v, store, 2, 1));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INST_EMUL);
	CHECK(vme.u.inst_emul.paging.cpu_mode == CPU_MODE_REAL &&
	    vme.u.inst_emul.paging.paging_mode == PAGING_MODE_FLAT);
	CHECK(vme.u.inst_emul.cs_base == 0xffff0000 && vme.u.inst_emul.cs_d == 0);
	CHECK(vme.u.inst_emul.vie.addrsize == 2 && vme.u.inst_emul.vie.num_valid == 0);
	CHECK_OK(emulate_mov(v, &vme));
	CHECK(dev_regs[0] == 0x12345678);
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x80);

	/* Long mode, bhyveload's state: every size, both directions. */
	CHECK_OK(vm_setup_freebsd_registers(v, 0x200000, 0x1000, 0x5000, 0x4000));
	dev_regs[1] = 0x1122334455667788ULL;
	dev_regs[2] = 0xa5;
	struct vmm_rs_action prog[] = {
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = DEV_GPA, .size = 8, .value = 0xfedcba9876543210ULL },
		{ .kind = VMM_RS_ACT_MMIO_WRITE, .gpa = DEV_GPA + 24, .size = 1, .value = 0x1ee },
		{ .kind = VMM_RS_ACT_MMIO_READ, .gpa = DEV_GPA + 8, .size = 2 },
		{ .kind = VMM_RS_ACT_MMIO_READ, .gpa = DEV_GPA + 16, .size = 1 },
		{ .kind = VMM_RS_ACT_MMIO_READ, .gpa = DEV_GPA + 8, .size = 8 },
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 },
	};
	CHECK_OK(vmm_rs_guest_set_script(v, prog, 6, 0));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INST_EMUL);
	CHECK(vme.u.inst_emul.paging.cpu_mode == CPU_MODE_64BIT &&
	    vme.u.inst_emul.paging.paging_mode == PAGING_MODE_64 && vme.u.inst_emul.paging.cr3 == 0x1000);
	CHECK(vme.u.inst_emul.vie.addrsize == 8 && vme.u.inst_emul.vie.rex_w == 1);
	CHECK(vme.u.inst_emul.vie.op.op_byte == 0x89 && vme.u.inst_emul.vie.opsize == 8);
	CHECK_OK(emulate_mov(v, &vme));
	CHECK(dev_regs[0] == 0xfedcba9876543210ULL);
	/* Byte moves keep long mode's default operand size, as FreeBSD's
	 * decoder (the size comes from the opcode). */
	emulate_next(v, DEV_GPA + 24, 4, 0x88);
	CHECK(dev_regs[3] == 0xee); /* the byte store took AL */
	emulate_next(v, DEV_GPA + 8, 2, 0x8b);
	emulate_next(v, DEV_GPA + 16, 4, 0x8a);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_read == 0x7788); /* the word load, as the guest got it */
	emulate_next(v, DEV_GPA + 8, 8, 0x8b);
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT);
	CHECK_OK(vmm_rs_guest_stats(v, &gs));
	CHECK(gs.last_read == 0x1122334455667788ULL);

	/* Round again, in the illumos-style form: for the whole VM. */
	CHECK_ERR(vmm_rs_set_mmio_exitcode(ctx, VM_EXITCODE_INOUT), EINVAL);
	CHECK_ERR(vmm_rs_set_mmio_exitcode(NULL, VM_EXITCODE_MMIO), EFAULT);
	CHECK_OK(vmm_rs_set_mmio_exitcode(ctx, VM_EXITCODE_MMIO));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_MMIO && vme.u.mmio.read == 0 && vme.u.mmio.bytes == 8);
	CHECK(vme.u.mmio.gpa == DEV_GPA && vme.u.mmio.data == 0xfedcba9876543210ULL);
	CHECK_OK(vmm_rs_set_mmio_exitcode(ctx, VM_EXITCODE_INST_EMUL));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INST_EMUL && vme.u.inst_emul.gpa == DEV_GPA + 24);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("inst_emul_test");
}
