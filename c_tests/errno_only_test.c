/*
 * Functions that report only through errno (void setters, size getters,
 * vm_close, vm_destroy, vm_vcpu_close, vm_inject_fault): on success they
 * leave the caller's errno as it was, whatever happened inside (a
 * contended lock's futex wait can set EAGAIN); on failure they set it.
 * (Rust unit tests check the futex case; this is the C face's contract.)
 */
#include "vmm_rs.h"
#include "test_util.h"

#define MARK 12345

/* errno is MARK after `call`, which must succeed. */
#define KEEPS(call)                                                     \
	do {                                                            \
		errno = MARK;                                           \
		call;                                                   \
		CHECK(errno == MARK);                                   \
	} while (0)

/* errno is `err` after `call`, which must fail. */
#define SETS(call, err)                                                 \
	do {                                                            \
		errno = MARK;                                           \
		call;                                                   \
		CHECK(errno == (err));                                  \
	} while (0)

int
main(void)
{
	watchdog_start(30, "errno_only_test");
	CHECK_OK(vm_create("errnoonly"));
	struct vmctx *ctx = vm_open("errnoonly");
	struct vmctx *ctx2 = vm_open("errnoonly");
	struct vcpu *v = vm_vcpu_open(ctx, 0);
	CHECK(ctx != NULL && ctx2 != NULL && v != NULL);

	KEEPS(vm_set_lowmem_limit(ctx, 1u << 30));
	KEEPS(CHECK(vm_get_lowmem_limit(ctx) == 1u << 30));
	KEEPS(vm_set_memflags(ctx, 0));
	KEEPS(CHECK(vm_get_lowmem_size(ctx) == 0));
	KEEPS(CHECK(vm_get_highmem_size(ctx) == 0));
	KEEPS(vm_inject_fault(v, 13, 1, 0));
	KEEPS(vm_close(ctx2));

	/* Failures set it. */
	SETS(vm_set_memflags(NULL, 0), EFAULT);
	SETS(vm_inject_fault(v, 8, 0, 0), EINVAL); /* #DF cannot be queued */
	KEEPS(vm_close(ctx2)); /* a closed handle: left alone (documented) */

	KEEPS(vm_vcpu_close(v));
	KEEPS(vm_destroy(ctx));
	return test_finish("errno_only_test");
}
