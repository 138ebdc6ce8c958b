/*
 * Destroying a VM while other threads are inside calls on it: vCPU threads
 * asleep in VM_RUN and threads issuing ioctls through their own handles.
 * Every thread finishes (watchdog), every call after the destroy fails with
 * EBADF, and valgrind sees no invalid access. A guest-memory pointer stays
 * readable and writable after the VM's last handle is gone, as FreeBSD's
 * mapping stays until the process unmaps it (a device thread that is late
 * at shutdown does not fault).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "vmm_rs.h"
#include "test_util.h"

#define NVCPU 2
#define NCALLERS 2

static atomic_int destroyed;
static atomic_int late_ok; /* calls that succeeded after the destroy */
static atomic_int bad_errno;
static pthread_barrier_t opened; /* callers hold their handles */

static void *
vcpu_thread(void *p)
{
	struct vcpu *v = p;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	while (vm_run(v, &vmrun) == 0)
		;
	if (errno != EBADF)
		atomic_fetch_add(&bad_errno, 1);
	return NULL;
}

static void *
caller_thread(void *p)
{
	(void)p;
	struct vmctx *ctx = vm_open("doomed");
	struct vcpu *v = vm_vcpu_open(ctx, NVCPU); /* an inactive vCPU */
	uint64_t val;
	if (ctx == NULL || v == NULL)
		atomic_fetch_add(&bad_errno, 1);
	pthread_barrier_wait(&opened);
	for (;;) {
		int was_destroyed = atomic_load(&destroyed);
		struct vm_cpu_topology topo;
		int rc1 = vm_get_register(v, VM_REG_GUEST_RIP, &val);
		int rc2 = vmm_ioctl(ctx, VM_GET_TOPOLOGY, &topo);
		if (was_destroyed) {
			if (rc1 == 0 || rc2 == 0)
				atomic_fetch_add(&late_ok, 1);
			else if (errno != EBADF)
				atomic_fetch_add(&bad_errno, 1);
			break;
		}
		sched_yield();
	}
	vm_vcpu_close(v);
	vm_close(ctx);
	return NULL;
}

int
main(void)
{
	pthread_t vt[NVCPU], ct[NCALLERS];
	struct vcpu *v[NVCPU];
	struct vmctx *ctx;

	watchdog_start(60, "destroy_race_test (a thread never returned)");
	CHECK_OK(vm_create("doomed"));
	ctx = vm_open("doomed");
	for (int i = 0; i < NVCPU; i++) {
		v[i] = vm_vcpu_open(ctx, i);
		CHECK_OK(vm_activate_cpu(v[i]));
		pthread_create(&vt[i], NULL, vcpu_thread, v[i]);
	}
	pthread_barrier_init(&opened, NULL, NCALLERS + 1);
	for (int i = 0; i < NCALLERS; i++)
		pthread_create(&ct[i], NULL, caller_thread, NULL);
	pthread_barrier_wait(&opened);
	for (int i = 0; i < NVCPU; i++)
		while (vmm_rs_vcpu_state(v[i]) != VCPU_SLEEPING)
			sched_yield();

	vm_destroy(ctx);
	atomic_store(&destroyed, 1);

	for (int i = 0; i < NVCPU; i++)
		pthread_join(vt[i], NULL);
	for (int i = 0; i < NCALLERS; i++)
		pthread_join(ct[i], NULL);
	CHECK(atomic_load(&late_ok) == 0);
	CHECK(atomic_load(&bad_errno) == 0);
	for (int i = 0; i < NVCPU; i++) {
		CHECK_ERR(vm_activate_cpu(v[i]), EBADF);
		vm_vcpu_close(v[i]);
	}
	/* The name can be reused at once. Its only handle destroyed, its
	 * memory reads zeros through the old pointer and takes writes. */
	CHECK_OK(vm_create("doomed"));
	ctx = vm_open("doomed");
	CHECK_OK(vm_setup_memory(ctx, 1 << 20, VM_MMAP_ALL));
	volatile uint32_t *ram = vm_map_gpa(ctx, 0x1000, 4);
	CHECK(ram != NULL);
	if (ram != NULL) {
		*ram = 0x12345678;
		vm_destroy(ctx);
		CHECK(*ram == 0);
		*ram = 1;
		CHECK(*ram == 1);
	}
	return test_finish("destroy_race_test");
}
