/*
 * A guest callback that calls the library through several handles, in
 * one long VM_RUN (a callback guest that never exits to the caller),
 * costs no memory per call: the library's per-thread handle cache keeps
 * a replaced entry only while a call still running uses it. It used to
 * keep every replaced entry, and the VM behind it, until VM_RUN returned:
 * 24 bytes per handle switch, 35 KB per VM created and destroyed there.
 *
 * The heap is measured with glibc's mallinfo2(), which valgrind does not
 * fill in: there the run checks the calls only. Other C libraries (musl)
 * have no mallinfo2(): there the process's data size from
 * /proc/self/statm stands in, which grows with the heap too.
 */
#include <unistd.h> /* (first: it defines __GLIBC__ on glibc) */
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "apic_util.h"

#define CALLS 100000
#define WARM 1000

static struct vmctx *ctx;
static struct vcpu *v1;
static long calls;
static size_t heap_warm, heap_end;
static int call_errors;

static size_t
heap_bytes(void)
{
#ifdef __GLIBC__
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
#else
	/* size resident shared text lib data (pages) */
	unsigned long pages[6] = { 0 };
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL || fscanf(f, "%lu %lu %lu %lu %lu %lu", &pages[0], &pages[1], &pages[2],
			     &pages[3], &pages[4], &pages[5]) != 6) {
		fprintf(stderr, "callback_handles_test: cannot read /proc/self/statm\n");
		exit(1);
	}
	fclose(f);
	return pages[5] * (size_t)sysconf(_SC_PAGESIZE);
#endif
}

static int
next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	(void)cookie;
	(void)vcpuid;
	(void)rip;
	calls++;
	/* Two handles of this VM, alternately. */
	call_errors += vm_ioapic_pulse_irq(ctx, 3) != 0;
	call_errors += vm_lapic_irq(v1, 0x40) != 0;
	/* Now and then another VM, used and destroyed. */
	if (calls % 100 == 0) {
		call_errors += vm_create("cbhandles-other") != 0;
		struct vmctx *other = vm_open("cbhandles-other");
		call_errors += vm_ioapic_pulse_irq(other, 1) != 0;
		vm_destroy(other);
	}
	if (calls == WARM)
		heap_warm = heap_bytes();
	if (calls == CALLS)
		heap_end = heap_bytes();
	*a = (struct vmm_rs_action){ .kind = calls >= CALLS ? VMM_RS_ACT_PORT_OUT : VMM_RS_ACT_COMPUTE,
		.port = 0x80, .size = 1 };
	return 0;
}

int
main(void)
{
	static const struct vmm_rs_guest_ops ops = { .next = next };
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	watchdog_start(120, "callback_handles_test");
	struct vcpu *v0;

	ctx = open_vm_with_two_vcpus("cbhandles", &v0, &v1);
	if (ctx == NULL)
		return test_finish("callback_handles_test");
	CHECK_OK(vmm_rs_guest_set_ops(v0, &ops, NULL));

	/* One VM_RUN: every callback is made inside it. */
	CHECK_OK(vm_run(v0, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_INOUT && calls == CALLS);
	CHECK(call_errors == 0);
	/* The old cost was about 5 MB here (2 switches per call). */
	printf("callback_handles_test: heap %zu -> %zu bytes over %d callbacks\n", heap_warm,
	    heap_end, CALLS - WARM);
	CHECK(heap_end < heap_warm + 256 * 1024);

	vm_vcpu_close(v0);
	vm_vcpu_close(v1);
	vm_destroy(ctx);
	return test_finish("callback_handles_test");
}
