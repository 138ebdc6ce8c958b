/*
 * vm_openf() as FreeBSD 15's bhyve uses it: VMMAPI_OPEN_CREATE creates a
 * VM only when the name is free, VMMAPI_OPEN_REINIT resets one that
 * existed (and fails as vm_reinit() does, leaving the VM as it was), bad
 * input is an error with nothing created, and threads racing to create
 * one name all open the same VM.
 */
#include <pthread.h>

#include "apic_util.h"

#define OUT(p) { .kind = VMM_RS_ACT_PORT_OUT, .port = (p), .size = 1 }

/* bhyverun's do_open(): reset the VM if it exists, else create it. */
static struct vmctx *
bhyve_do_open(const char *name)
{
	struct vmctx *ctx = vm_openf(name, VMMAPI_OPEN_REINIT);
	if (ctx == NULL && errno == ENOENT)
		ctx = vm_openf(name, VMMAPI_OPEN_CREATE);
	return ctx;
}

/* Whether `a` and `b` are handles of one VM: a register set through one
 * reads back through the other. */
static int
same_vm(struct vmctx *a, struct vmctx *b, uint64_t mark)
{
	struct vcpu *va = vm_vcpu_open(a, 0), *vb = vm_vcpu_open(b, 0);
	uint64_t got = 0;
	int same = va != NULL && vb != NULL &&
	    vm_set_register(va, VM_REG_GUEST_RDX, mark) == 0 &&
	    vm_get_register(vb, VM_REG_GUEST_RDX, &got) == 0 && got == mark;
	vm_vcpu_close(va);
	vm_vcpu_close(vb);
	return same;
}

static void
bad_input_creates_nothing(void)
{
	watchdog_phase("bad input");
	CHECK(vm_openf(NULL, 0) == NULL && errno == EFAULT);
	CHECK(vm_openf(NULL, VMMAPI_OPEN_CREATE) == NULL && errno == EFAULT);
	CHECK(vm_openf(NULL, 4) == NULL && errno == EFAULT); /* before the flags */
	CHECK(vm_openf("openf-bad", 0) == NULL && errno == ENOENT);
	CHECK(vm_openf("openf-bad", VMMAPI_OPEN_REINIT) == NULL && errno == ENOENT);
	CHECK(vm_openf("openf-bad", VMMAPI_OPEN_CREATE | 4) == NULL && errno == EINVAL);
	CHECK(vm_openf("openf-bad", -1) == NULL && errno == EINVAL);
	CHECK(vm_openf("openf/bad", VMMAPI_OPEN_CREATE) == NULL && errno == EINVAL);
	CHECK(vm_openf("", VMMAPI_OPEN_CREATE) == NULL && errno == EINVAL);
	CHECK(vm_openf("openf/bad", 0) == NULL && errno == ENOENT); /* as vm_open */
	CHECK(vm_open("openf-bad") == NULL && errno == ENOENT);     /* none made */
}

static void
create_and_reinit(void)
{
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };
	struct vmm_rs_action script[] = { OUT(0x90) };
	uint64_t rbx = 0;

	watchdog_phase("create and reinit");
	/* A VM this call creates is new: REINIT has nothing to do. */
	struct vmctx *ctx = vm_openf("openf", VMMAPI_OPEN_CREATE | VMMAPI_OPEN_REINIT);
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return;
	CHECK(strcmp(vm_get_name(ctx), "openf") == 0);
	CHECK_ERR(vm_create("openf"), EEXIST);
	struct vmctx *ctx2 = vm_openf("openf", VMMAPI_OPEN_CREATE);
	CHECK(ctx2 != NULL && same_vm(ctx, ctx2, 0x1111));
	vm_close(ctx2);

	struct vcpu *v = vm_vcpu_open(ctx, 0);
	CHECK_OK(vm_activate_cpu(v));
	CHECK_OK(vmm_rs_guest_set_script(v, script, 1, 0)); /* OUT 0x90 forever */
	CHECK_OK(vm_set_register(v, VM_REG_GUEST_RBX, 0x1234));
	run_to_out(v, 0x90, &vme);

	/* vCPU 0 is active and has not seen a suspend: EBUSY, nothing reset. */
	CHECK(vm_openf("openf", VMMAPI_OPEN_REINIT) == NULL && errno == EBUSY);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RBX, &rbx));
	CHECK(rbx == 0x1234);
	CHECK_OK(vm_run(v, &vmrun)); /* still active */
	CHECK(vme.exitcode == VM_EXITCODE_INOUT);

	/* bhyve's reboot: suspend, every vCPU sees it, then the next bhyve
	 * process opens the VM with REINIT. */
	CHECK_OK(vm_suspend(ctx, VM_SUSPEND_RESET));
	CHECK_OK(vm_run(v, &vmrun));
	CHECK(vme.exitcode == VM_EXITCODE_SUSPENDED);
	ctx2 = bhyve_do_open("openf");
	CHECK(ctx2 != NULL);
	CHECK_OK(vm_get_register(v, VM_REG_GUEST_RBX, &rbx));
	CHECK(rbx == 0);
	CHECK_ERR(vm_run(v, &vmrun), EINVAL); /* inactive until activated */
	CHECK(ctx2 != NULL && same_vm(ctx, ctx2, 0x2222));
	vm_vcpu_close(v);
	vm_close(ctx);
	vm_destroy(ctx2);
	CHECK(vm_open("openf") == NULL && errno == ENOENT);

	/* bhyve's first start: no VM, so REINIT fails ENOENT and it creates. */
	ctx = bhyve_do_open("openf");
	CHECK(ctx != NULL);
	vm_destroy(ctx);
}

#define RACERS 2
#define ROUNDS 50

static pthread_barrier_t race_start;
static struct vmctx *race_ctx[RACERS];

static void *
racer(void *arg)
{
	struct vmctx **out = arg;
	pthread_barrier_wait(&race_start);
	*out = vm_openf("openf-race", VMMAPI_OPEN_CREATE);
	return NULL;
}

/* Two threads open-or-create one name at once: both succeed, one VM. */
static void
racing_creators_share_one_vm(void)
{
	watchdog_phase("racing creators");
	for (int round = 0; round < ROUNDS; round++) {
		pthread_t t[RACERS];
		CHECK(pthread_barrier_init(&race_start, NULL, RACERS) == 0);
		for (int i = 0; i < RACERS; i++)
			CHECK(pthread_create(&t[i], NULL, racer, &race_ctx[i]) == 0);
		for (int i = 0; i < RACERS; i++)
			CHECK(pthread_join(t[i], NULL) == 0);
		pthread_barrier_destroy(&race_start);
		CHECK(race_ctx[0] != NULL && race_ctx[1] != NULL);
		if (race_ctx[0] == NULL || race_ctx[1] == NULL)
			return;
		CHECK(same_vm(race_ctx[0], race_ctx[1], 0x3000 + round));
		vm_close(race_ctx[1]);
		vm_destroy(race_ctx[0]);
	}
}

int
main(void)
{
	watchdog_start(60, "openf_test");
	bad_input_creates_nothing();
	create_and_reinit();
	racing_creators_share_one_vm();
	return test_finish("openf_test");
}
