/*
 * VM_STATS / VM_STAT_DESC and libvmmapi's vm_get_stats / vm_get_stat_desc:
 * FreeBSD's descriptions, the counts a guest's exits produce, the index
 * rules of vmm_stat_copy, and VM_REINIT zeroing them.
 */
#include "apic_util.h"

int
main(void)
{
	struct vmctx *ctx;
	struct vcpu *v;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct timeval tv = { 0 };
	int n = 0, nstats = 0;
	uint64_t *s;

	watchdog_start(30, "stats_test");
	CHECK_OK(vm_create("stats"));
	ctx = vm_open("stats");
	v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));

	/* Descriptions: FreeBSD's strings, then NULL/EINVAL past the end. */
	while (vm_get_stat_desc(ctx, nstats) != NULL)
		nstats++;
	CHECK(errno == EINVAL && nstats > 8 && nstats < 64);
	CHECK(vm_get_stat_desc(ctx, -1) == NULL && errno == EINVAL);
	int exits = stat_index(ctx, "total number of vm exits");
	int pause = stat_index(ctx, "number of times pause was intercepted");
	int inout = stat_index(ctx, "number of times in/out was intercepted");
	int user = stat_index(ctx, "number of vm exits handled in userspace");
	int emul = stat_index(ctx, "vm exits for instruction emulation");
	CHECK(exits >= 0 && pause >= 0 && inout >= 0 && user >= 0 && emul >= 0);

	/* A guest: PAUSE (exiting, as bhyve -P), an emulated local APIC read, an OUT to userland. */
	CHECK_OK(vm_set_capability(v, VM_CAP_PAUSE_EXIT, 1));
	{
		struct vmm_rs_action prog[] = {
			{ .kind = VMM_RS_ACT_PAUSE },
			{ .kind = VMM_RS_ACT_MMIO_READ, .gpa = LAPIC_GPA + 0x20, .size = 4 },
			{ .kind = VMM_RS_ACT_PORT_OUT, .port = 0x80, .size = 1 },
		};
		CHECK_OK(vmm_rs_guest_set_script(v, prog, 3, -1));
		CHECK_OK(vm_run(v, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_PAUSE);
		CHECK_OK(vm_run(v, &vmrun));
		CHECK(vme.exitcode == VM_EXITCODE_INOUT);
	}
	s = vm_get_stats(v, &tv, &n);
	CHECK(s != NULL && n == nstats && tv.tv_sec > 0);
	if (s != NULL) {
		CHECK(s[exits] == 3 && s[pause] == 1 && s[inout] == 1 && s[emul] == 1);
		CHECK(s[user] == 2);
	}
	/*
	 * Both out-pointers are optional. The buffer is the thread's one, as
	 * libvmmapi's (grown by realloc only): a later call fills the same
	 * memory, so an earlier result still points at readable counts.
	 */
	CHECK(vm_get_stats(v, NULL, NULL) == s && s != NULL && s[pause] == 1);

	/* The ioctl's index rules (vmm_stat_copy). */
	{
		struct vm_stats st = { .cpuid = 0, .index = nstats - 1 };
		CHECK_OK(vmm_ioctl(ctx, VM_STATS, &st));
		CHECK(st.num_entries == 1);
		st.index = nstats;
		CHECK_OK(vmm_ioctl(ctx, VM_STATS, &st));
		CHECK(st.num_entries == 0);
		st.index = nstats + 1;
		CHECK_ERR(vmm_ioctl(ctx, VM_STATS, &st), ENOENT);
		st.index = -1;
		CHECK_ERR(vmm_ioctl(ctx, VM_STATS, &st), EINVAL);
		st.index = 0;
		st.cpuid = 16;
		CHECK_ERR(vmm_ioctl(ctx, VM_STATS, &st), EINVAL);
		struct vm_stat_desc d = { .index = pause };
		CHECK_OK(vmm_ioctl(ctx, VM_STAT_DESC, &d));
		CHECK(strcmp(d.desc, "number of times pause was intercepted") == 0);
		d.index = nstats;
		CHECK_ERR(vmm_ioctl(ctx, VM_STAT_DESC, &d), EINVAL);
	}

	/* VM_REINIT zeroes every statistic. */
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED);
	CHECK_OK(vm_reinit(ctx));
	s = vm_get_stats(v, NULL, &n);
	CHECK(s != NULL && n == nstats);
	for (int i = 0; s != NULL && i < n; i++)
		CHECK(s[i] == 0);

	vm_vcpu_close(v);
	vm_destroy(ctx);
	return test_finish("stats_test");
}
