/*
 * Calls made while a thread exits: a device thread whose cleanup (a
 * pthread key destructor, which glibc runs after every thread-local
 * destructor, the library's included) deasserts its line, pulses a pin and
 * reads a register. The library's per-thread handle cache and send-counter
 * slot are gone by then: the calls must still work, be counted exactly,
 * and leak nothing (valgrind runs this test too).
 *
 * Three kinds of thread: one that used the library before exiting (its
 * cache and slot are torn down first), one whose first call ever is in the
 * destructor, and one that used a handle another thread closes meanwhile.
 */
#include "apic_util.h"

static struct vmctx *ctx;
static struct vcpu *v0;
static pthread_key_t cleanup_key;

/* What the destructors saw; checked by the main thread after the joins. */
static int cleanup_rc[3][3];
static uint64_t cleanup_rip[3];

#define LEVEL_PIN 9 /* masked: counts only */
#define EDGE_PIN 10 /* unmasked edge, vector 0x4A -> vCPU 0 */

static void
cleanup(void *arg)
{
	int which = (int)(intptr_t)arg - 1;
	cleanup_rc[which][0] = vm_ioapic_deassert_irq(ctx, LEVEL_PIN);
	cleanup_rc[which][1] = vm_ioapic_pulse_irq(ctx, EDGE_PIN);
	cleanup_rc[which][2] = vm_get_register(v0, VM_REG_GUEST_RIP, &cleanup_rip[which]);
}

/* Used the library first: the destructor runs after its caches are gone. */
static void *
used_before_exit(void *arg)
{
	(void)arg;
	CHECK_OK(vm_ioapic_assert_irq(ctx, LEVEL_PIN));
	CHECK_OK(vm_ioapic_pulse_irq(ctx, EDGE_PIN));
	uint64_t rip;
	CHECK_OK(vm_get_register(v0, VM_REG_GUEST_RIP, &rip));
	pthread_setspecific(cleanup_key, (void *)1);
	return NULL;
}

/* First call ever in the destructor (its assert is made for it). */
static void *
first_call_at_exit(void *arg)
{
	(void)arg;
	pthread_setspecific(cleanup_key, (void *)2);
	return NULL;
}

/* Its cached ctx handle is closed by the main thread before it exits. */
static struct vmctx *second;
static pthread_barrier_t closed;

static void *
cached_handle_closed(void *arg)
{
	(void)arg;
	CHECK_OK(vm_ioapic_assert_irq(second, LEVEL_PIN));
	CHECK_OK(vm_ioapic_deassert_irq(second, LEVEL_PIN));
	pthread_setspecific(cleanup_key, (void *)3);
	pthread_barrier_wait(&closed); /* main closes `second` */
	pthread_barrier_wait(&closed);
	CHECK_ERR(vm_ioapic_assert_irq(second, LEVEL_PIN), EBADF);
	return NULL;
}

int
main(void)
{
	watchdog_start(30, "thread_exit_test");
	CHECK_OK(vm_create("texit"));
	ctx = vm_open("texit");
	second = vm_open("texit");
	v0 = vm_vcpu_open(ctx, 0);
	CHECK(ctx != NULL && second != NULL && v0 != NULL);
	CHECK_OK(vm_activate_cpu(v0));
	CHECK_OK(vm_set_register(v0, VM_REG_GUEST_RIP, 0x1234));
	kwrite(v0, LAPIC_GPA + LAPIC_SVR, 0x1ff);
	rte_write(v0, EDGE_PIN, 0x4A, 0);
	CHECK_OK(pthread_key_create(&cleanup_key, cleanup));
	CHECK_OK(pthread_barrier_init(&closed, NULL, 2));

	pthread_t t;
	CHECK_OK(pthread_create(&t, NULL, used_before_exit, NULL));
	CHECK_OK(pthread_join(t, NULL));

	CHECK_OK(vm_ioapic_assert_irq(ctx, LEVEL_PIN)); /* the one thread 2 drops */
	CHECK_OK(pthread_create(&t, NULL, first_call_at_exit, NULL));
	CHECK_OK(pthread_join(t, NULL));

	CHECK_OK(vm_ioapic_assert_irq(ctx, LEVEL_PIN)); /* the one thread 3 drops */
	CHECK_OK(pthread_create(&t, NULL, cached_handle_closed, NULL));
	pthread_barrier_wait(&closed);
	vm_close(second);
	pthread_barrier_wait(&closed);
	CHECK_OK(pthread_join(t, NULL));

	for (int i = 0; i < 3; i++) {
		CHECK(cleanup_rc[i][0] == 0 && cleanup_rc[i][1] == 0 && cleanup_rc[i][2] == 0);
		CHECK(cleanup_rip[i] == 0x1234);
	}
	/* Every deassert at exit took effect: the count is back to zero. */
	CHECK_ERR(vm_ioapic_deassert_irq(ctx, LEVEL_PIN), ERANGE);
	/* Four pulses of the edge pin, each one interrupt, all counted. */
	struct vmm_rs_ioapic_stats st;
	CHECK_OK(vmm_rs_ioapic_stats(ctx, &st));
	CHECK(st.interrupts == 4);
	CHECK(lapic_bit(v0, LAPIC_IRR, 0x4A) == 1);

	CHECK_OK(pthread_key_delete(cleanup_key));
	vm_vcpu_close(v0);
	vm_destroy(ctx);
	return test_finish("thread_exit_test");
}
