/*
 * String port I/O (INS, OUTS, with and without REP) the way FreeBSD 14's
 * bhyve finishes it: VM_EXITCODE_INOUT_STR with the paging state, index,
 * count, address size and segment; userland (here the loop of bhyve's
 * emulate_inout) moves at most 16 items per exit through vm_copy_setup /
 * vm_copyin / vm_copyout, writes back the index and count registers and
 * restarts the instruction while items remain.
 */
#include <sys/mman.h>

#include "vmm_rs.h"
#include "test_util.h"

#define MB (1024UL * 1024)

static struct vcpu *v;
static char console[64];
static size_t console_len;
static uint16_t fifo_next;

/* The devices: 0xe9 prints bytes, 0x510 hands out consecutive words, 0x80 counts. */
static int
port_handler(int in, int port, int bytes, uint32_t *val)
{
	if (port == 0xe9 && !in && bytes == 1 && console_len < sizeof(console)) {
		console[console_len++] = (char)*val;
		return 0;
	}
	if (port == 0x510 && in && bytes == 2) {
		*val = fifo_next++;
		return 0;
	}
	if (port == 0x80 && !in && bytes == 4)
		return 0;
	return -1;
}

/* vie_update_register: a 2- or 4-byte address size keeps (or clears) the rest. */
static void
update_register(int reg, uint64_t val, int size)
{
	uint64_t old = 0;
	if (size == 2) {
		CHECK_OK(vm_get_register(v, reg, &old));
		val = (old & ~0xffffULL) | (val & 0xffff);
	} else if (size == 4) {
		val &= 0xffffffffULL;
	}
	CHECK_OK(vm_set_register(v, reg, val));
}

/* bhyve's emulate_inout for a string instruction (usr.sbin/bhyve/inout.c). */
static void
emulate_inout_str(const struct vm_exit *vme)
{
	const struct vm_inout_str *vis = &vme->u.inout_str;
	int in = vis->inout.in, bytes = vis->inout.bytes, addrsize = vis->addrsize;
	uint64_t mask = addrsize == 8 ? ~0ULL : (1ULL << (addrsize * 8)) - 1;
	uint64_t index = vis->index & mask, count = vis->count & mask;
	int iterations = count < 16 ? (int)count : 16;
	struct vm_guest_paging paging = vis->paging;
	struct iovec iov[2];
	int fault;

	CHECK(addrsize == 2 || addrsize == 4 || addrsize == 8);
	while (iterations > 0) {
		uint64_t gla = vis->seg_desc.base + index; /* vie_calculate_gla, flat segment */
		uint32_t val = 0;
		CHECK_OK(vm_copy_setup(v, &paging, gla, bytes, in ? PROT_WRITE : PROT_READ, iov, 2, &fault));
		CHECK(fault == 0);
		if (!in)
			vm_copyin(iov, &val, bytes);
		CHECK_OK(port_handler(in, vis->inout.port, bytes, &val));
		if (in)
			vm_copyout(&val, iov, bytes);
		index = (vis->rflags & 0x400) ? index - bytes : index + bytes; /* PSL_D */
		count--;
		iterations--;
	}
	update_register(in ? VM_REG_GUEST_RDI : VM_REG_GUEST_RSI, index, addrsize);
	if (vis->inout.rep)
		update_register(VM_REG_GUEST_RCX, count, addrsize);
	if (count != 0)
		CHECK_OK(vm_restart_instruction(v));
}

int
main(void)
{
	struct vmctx *ctx;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	int str_exits = 0;
	uint64_t rsi, rdi, rcx;

	watchdog_start(60, "string_io_test");
	CHECK_OK(vm_create("string_io"));
	ctx = vm_open("string_io");
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_setup_memory(ctx, 2 * MB, VM_MMAP_ALL));
	char *mem = vm_map_gpa(ctx, 0, 2 * MB);
	CHECK(mem != NULL);
	if (mem == NULL)
		return test_finish("string_io_test");
	memcpy(mem + 0x1000, "hello, world", 12);
	memcpy(mem + 0x3000, "\x78\x56\x34\x12", 4);
	CHECK_OK(vcpu_reset(v)); /* real mode: DS and ES based at 0 */
	CHECK_OK(vm_activate_cpu(v));

	struct vmm_rs_action prog[] = {
		{ .kind = VMM_RS_ACT_OUTS, .port = 0xe9, .size = 1, .gpa = 0x1000, .value = 12 }, /* rep outsb */
		{ .kind = VMM_RS_ACT_INS, .port = 0x510, .size = 2, .gpa = 0x2000, .value = 20 }, /* rep insw */
		{ .kind = VMM_RS_ACT_OUTS, .port = 0x80, .size = 4, .gpa = 0x3000 },              /* outsd */
		{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x81, .size = 1, .value = 1 },
	};
	CHECK_OK(vmm_rs_guest_set_script(v, prog, 4, 3));
	for (;;) {
		CHECK_OK(vm_run(v, &vmrun));
		if (vme.exitcode != VM_EXITCODE_INOUT_STR)
			break;
		if (str_exits == 0) {
			/* What the first exit reports. */
			const struct vm_inout_str *vis = &vme.u.inout_str;
			CHECK(vis->inout.string && vis->inout.rep && !vis->inout.in && vis->inout.port == 0xe9);
			CHECK(vis->index == 0x1000 && vis->count == 12 && vis->addrsize == 2);
			CHECK(vis->seg_name == VM_REG_GUEST_DS && vis->seg_desc.base == 0);
			CHECK(vis->paging.cpu_mode == CPU_MODE_REAL && vis->paging.paging_mode == PAGING_MODE_FLAT);
		}
		emulate_inout_str(&vme);
		str_exits++;
		CHECK(str_exits < 10);
		if (str_exits >= 10)
			break;
	}
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && vme.u.inout.port == 0x81);
	/* rep outsb: one exit; rep insw of 20: 16 then 4 after the restart; outsd: one. */
	CHECK(str_exits == 4);
	CHECK(console_len == 12 && memcmp(console, "hello, world", 12) == 0);
	for (int i = 0; i < 20; i++)
		CHECK(((uint16_t *)(mem + 0x2000))[i] == i);
	CHECK(((uint16_t *)(mem + 0x2000))[20] == 0);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RSI, &rsi));
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RDI, &rdi));
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RCX, &rcx));
	CHECK(rsi == 0x3004 && rdi == 0x2000 + 40 && rcx == 0);

	/* Items of 8 bytes do not exist. */
	struct vmm_rs_action bad = { .kind = VMM_RS_ACT_INS, .port = 0x510, .size = 8, .gpa = 0x2000 };
	CHECK_ERR(vmm_rs_guest_set_script(v, &bad, 1, -1), EINVAL);

	/* Counted as in/out exits. */
	int inout = stat_index(ctx, "number of times in/out was intercepted"), n = 0;
	uint64_t *st = vm_get_stats(v, NULL, &n);
	CHECK(inout >= 0 && st != NULL && st[inout] == 5);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("string_io_test");
}
