/*
 * The C face's benchmarks (issue 6), run by `make bench`: IOAPIC assert +
 * deassert pairs through libvmmapi and through vmm_ioctl, one and two
 * threads; the same pair through Linux KVM's in-kernel IOAPIC
 * (KVM_IRQ_LINE); a bare syscall as the floor of any kernel path; and the
 * VM_RUN exit round trip through vm_run(). Each figure is the median of
 * seven timed batches after a warm-up. Figures that are compared with each
 * other (our pairs and KVM's) are measured in alternating batches, so a
 * machine whose speed drifts affects both sides alike.
 *
 * Usage: irq_bench [out.tsv]. The TSV has one line per figure:
 * key<TAB>ns<TAB>description; benches/vmm.rs folds it into the table.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "vmm_rs.h"

#define BATCHES 7
#define IOAPIC_GPA 0xFEC00000UL
#define LAPIC_SVR 0xFEE000F0UL

#define MASKED_PIN 5
#define EDGE_PIN 6
#define MASKED_PIN2 7
#define EDGE_PIN2 8

static FILE *tsv;

#define SETUP(call)                                                         \
	do {                                                                \
		if ((call) != 0) {                                          \
			fprintf(stderr, "irq_bench: %s failed: %s\n", #call, \
			    strerror(errno));                               \
			exit(1);                                            \
		}                                                           \
	} while (0)

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void
report(const char *key, double ns, const char *unit, const char *what)
{
	printf("%-22s %10.1f ns/%s  %s\n", key, ns, unit, what);
	if (tsv != NULL)
		fprintf(tsv, "%s\t%.1f\t%s\n", key, ns, what);
}

/* One thread's work: `n` operations; returns nothing, may not fail. */
typedef void (*op_fn)(void *arg, long n);

/* Median over BATCHES of the ns per operation of `op` run `n` times. */
static double
measure(op_fn op, void *arg, long n)
{
	double per[BATCHES];

	op(arg, n / 4); /* warm-up */
	for (int b = 0; b < BATCHES; b++) {
		double t0 = now_ns();
		op(arg, n);
		per[b] = (now_ns() - t0) / (double)n;
	}
	qsort(per, BATCHES, sizeof(per[0]), cmp_double);
	return per[BATCHES / 2];
}

/* One figure of an interleaved group. */
struct side {
	const char *key, *what;
	op_fn op;
	void *arg;
	long n;
	int skip; /* not measured (no /dev/kvm) */
};

/*
 * Medians over BATCHES of each side's ns per operation, the sides timed in
 * turn within every batch; then reported in order.
 */
static void
measure_interleaved(struct side *sides, int nsides)
{
	double per[8][BATCHES];

	for (int i = 0; i < nsides; i++)
		if (!sides[i].skip)
			sides[i].op(sides[i].arg, sides[i].n / 4); /* warm-up */
	for (int b = 0; b < BATCHES; b++) {
		for (int i = 0; i < nsides; i++) {
			if (sides[i].skip)
				continue;
			double t0 = now_ns();
			sides[i].op(sides[i].arg, sides[i].n);
			per[i][b] = (now_ns() - t0) / (double)sides[i].n;
		}
	}
	for (int i = 0; i < nsides; i++) {
		if (sides[i].skip)
			continue;
		qsort(per[i], BATCHES, sizeof(per[i][0]), cmp_double);
		report(sides[i].key, per[i][BATCHES / 2], "pair", sides[i].what);
	}
}

/* --- the operations --------------------------------------------------- */

struct pair_arg {
	struct vmctx *ctx;
	int pin;
	int kvm_vm;
};

static void
vmmapi_pairs(void *p, long n)
{
	struct pair_arg *a = p;

	for (long i = 0; i < n; i++) {
		if (vm_ioapic_assert_irq(a->ctx, a->pin) != 0 ||
		    vm_ioapic_deassert_irq(a->ctx, a->pin) != 0)
			abort();
	}
}

static void
ioctl_pairs(void *p, long n)
{
	struct pair_arg *a = p;
	struct vm_ioapic_irq irq = { .irq = a->pin };

	for (long i = 0; i < n; i++) {
		if (vmm_ioctl(a->ctx, VM_IOAPIC_ASSERT_IRQ, &irq) != 0 ||
		    vmm_ioctl(a->ctx, VM_IOAPIC_DEASSERT_IRQ, &irq) != 0)
			abort();
	}
}

static void
kvm_pairs(void *p, long n)
{
	struct pair_arg *a = p;
	struct kvm_irq_level up = { .irq = (unsigned)a->pin, .level = 1 };
	struct kvm_irq_level down = { .irq = (unsigned)a->pin, .level = 0 };

	for (long i = 0; i < n; i++) {
		if (ioctl(a->kvm_vm, KVM_IRQ_LINE, &up) < 0 ||
		    ioctl(a->kvm_vm, KVM_IRQ_LINE, &down) < 0)
			abort();
	}
}

static void
getppid_calls(void *p, long n)
{
	(void)p;
	for (long i = 0; i < n; i++)
		(void)syscall(SYS_getppid);
}

/* The cost of the atomics an IRQ pair is made of, on this CPU. */
static _Atomic unsigned long rmw_word;

static void
xadd_ops(void *p, long n)
{
	(void)p;
	for (long i = 0; i < n; i++)
		atomic_fetch_add(&rmw_word, 1);
}

static void
cas_ops(void *p, long n)
{
	(void)p;
	for (long i = 0; i < n; i++) {
		unsigned long v = atomic_load(&rmw_word);
		while (!atomic_compare_exchange_weak(&rmw_word, &v, v + 1))
			;
	}
}

/* Two threads, each on its own pin, started together. */
struct two {
	op_fn op;
	struct pair_arg arg[2];
	long n;
	pthread_barrier_t go;
};

struct worker {
	struct two *two;
	int i;
};

static void *
two_worker(void *p)
{
	struct worker *w = p;

	pthread_barrier_wait(&w->two->go);
	w->two->op(&w->two->arg[w->i], w->two->n);
	return NULL;
}

static void
two_threads(void *p, long n)
{
	struct two *t = p;
	struct worker w[2] = { { t, 0 }, { t, 1 } };
	pthread_t th[2];

	t->n = n;
	pthread_barrier_init(&t->go, NULL, 3);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, two_worker, &w[i]);
	pthread_barrier_wait(&t->go);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&t->go);
}

/* --- VM_RUN exit round trip ------------------------------------------- */

static int
port_out_next(void *cookie, int vcpuid, uint64_t rip, struct vmm_rs_action *a)
{
	(void)cookie;
	(void)vcpuid;
	(void)rip;
	memset(a, 0, sizeof(*a));
	a->kind = VMM_RS_ACT_PORT_OUT;
	a->port = 0x80;
	a->size = 1;
	return 0;
}

static void
vm_run_exits(void *p, long n)
{
	struct vcpu *v = p;
	struct vm_exit vme;
	struct vm_run vmrun = { .vm_exit = &vme };

	for (long i = 0; i < n; i++) {
		if (vm_run(v, &vmrun) != 0 || vme.exitcode != VM_EXITCODE_INOUT)
			abort();
	}
}

/* --- setup --------------------------------------------------------------- */

static void
kernemu_write(struct vcpu *v, uint64_t gpa, uint64_t val)
{
	SETUP(vm_readwrite_kernemu_device(v, gpa, true, 4, &val));
}

/* An unmasked edge entry, `vector`, physical destination vCPU 0. */
static void
program_edge(struct vcpu *v, int pin, int vector)
{
	kernemu_write(v, IOAPIC_GPA, 0x11 + 2 * pin);
	kernemu_write(v, IOAPIC_GPA + 0x10, 0);
	kernemu_write(v, IOAPIC_GPA, 0x10 + 2 * pin);
	kernemu_write(v, IOAPIC_GPA + 0x10, vector);
}

/* A VM with two active vCPUs, vCPU 0's APIC enabled, EDGE_PIN and
 * EDGE_PIN2 programmed as unmasked edge entries to vCPU 0; the other pins
 * stay masked. */
static struct vmctx *
setup_vmm_rs(struct vcpu *v[2])
{
	struct vmctx *ctx;

	SETUP(vm_create("irq_bench"));
	if ((ctx = vm_open("irq_bench")) == NULL ||
	    (v[0] = vm_vcpu_open(ctx, 0)) == NULL ||
	    (v[1] = vm_vcpu_open(ctx, 1)) == NULL) {
		perror("irq_bench: vm_open/vm_vcpu_open");
		exit(1);
	}
	SETUP(vm_activate_cpu(v[0]));
	SETUP(vm_activate_cpu(v[1]));
	kernemu_write(v[0], LAPIC_SVR, 0x1ff); /* software-enable vCPU 0's APIC */
	program_edge(v[0], EDGE_PIN, 0x40);
	program_edge(v[0], EDGE_PIN2, 0x41);
	return ctx;
}

static void
bench_vm_run(void)
{
	struct vmctx *ctx;
	struct vcpu *v;
	struct vmm_rs_guest_ops ops = { .next = port_out_next };

	SETUP(vm_create("irq_bench_run"));
	if ((ctx = vm_open("irq_bench_run")) == NULL ||
	    (v = vm_vcpu_open(ctx, 0)) == NULL) {
		perror("irq_bench: vm_open/vm_vcpu_open");
		exit(1);
	}
	SETUP(vm_activate_cpu(v));
	SETUP(vmm_rs_guest_set_ops(v, &ops, NULL));
	report("c_vm_run_inout_exit", measure(vm_run_exits, v, 500000), "exit",
	    "vm_run() returning a port I/O exit, resumed by the next call");
	vm_vcpu_close(v);
	vm_destroy(ctx);
}

/*
 * A KVM VM with the in-kernel IOAPIC and one vCPU, GSI EDGE_PIN programmed
 * as an unmasked edge entry to vCPU 0; returns its fd, or -1 with `why`
 * set.
 */
static int
setup_kvm(const char **why)
{
	struct kvm_irqchip chip = { .chip_id = KVM_IRQCHIP_IOAPIC };
	int kvm, vm;

	if ((kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC)) < 0) {
		*why = "/dev/kvm cannot be opened";
		return -1;
	}
	if ((vm = ioctl(kvm, KVM_CREATE_VM, 0)) < 0) {
		*why = "KVM_CREATE_VM failed";
		return -1;
	}
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) {
		*why = "KVM_CREATE_IRQCHIP failed";
		return -1;
	}
	if (ioctl(vm, KVM_CREATE_VCPU, 0) < 0) {
		*why = "KVM_CREATE_VCPU failed";
		return -1;
	}
	if (ioctl(vm, KVM_GET_IRQCHIP, &chip) < 0) {
		*why = "KVM_GET_IRQCHIP failed";
		return -1;
	}
	chip.chip.ioapic.redirtbl[EDGE_PIN].bits = 0x40;
	if (ioctl(vm, KVM_SET_IRQCHIP, &chip) < 0) {
		*why = "KVM_SET_IRQCHIP failed";
		return -1;
	}
	close(kvm);
	return vm;
}

/* The IRQ pairs: ours through both faces and KVM's, side by side. */
static void
bench_irq_pairs(void)
{
	const char *why = NULL;
	struct vcpu *v[2];
	struct vmctx *ctx = setup_vmm_rs(v);
	int kvm = setup_kvm(&why);
	int nokvm = kvm < 0;
	long n = 2000000, nk = 200000;
	struct pair_arg masked = { .ctx = ctx, .pin = MASKED_PIN };
	struct pair_arg edge = { .ctx = ctx, .pin = EDGE_PIN };
	struct pair_arg kmasked = { .kvm_vm = kvm, .pin = MASKED_PIN };
	struct pair_arg kedge = { .kvm_vm = kvm, .pin = EDGE_PIN };
	struct two masked2 = { .op = vmmapi_pairs, .arg = { masked, { .ctx = ctx, .pin = MASKED_PIN2 } } };
	struct two edge2 = { .op = vmmapi_pairs, .arg = { edge, { .ctx = ctx, .pin = EDGE_PIN2 } } };
	struct two kmasked2 = { .op = kvm_pairs, .arg = { kmasked, { .kvm_vm = kvm, .pin = MASKED_PIN2 } } };

	if (nokvm)
		printf("KVM column skipped: %s (%s)\n", why, strerror(errno));
	struct side masked1[] = {
		{ "vmmapi_masked_1t", "vm_ioapic_assert_irq + deassert, masked pin", vmmapi_pairs, &masked, n, 0 },
		{ "ioctl_masked_1t", "vmm_ioctl(VM_IOAPIC_ASSERT_IRQ/DEASSERT_IRQ), masked pin", ioctl_pairs, &masked, n, 0 },
		{ "kvm_masked_1t", "KVM_IRQ_LINE 1 + 0, masked GSI", kvm_pairs, &kmasked, nk, nokvm },
	};
	struct side edge1[] = {
		{ "vmmapi_edge_1t", "vm_ioapic_assert_irq + deassert, edge pin -> vCPU 0", vmmapi_pairs, &edge, n, 0 },
		{ "ioctl_edge_1t", "vmm_ioctl(VM_IOAPIC_ASSERT_IRQ/DEASSERT_IRQ), edge pin -> vCPU 0", ioctl_pairs, &edge, n, 0 },
		{ "kvm_edge_1t", "KVM_IRQ_LINE 1 + 0, edge GSI -> vCPU 0", kvm_pairs, &kedge, nk, nokvm },
	};
	struct side two_threads_each[] = {
		{ "vmmapi_masked_2t", "vm_ioapic_assert_irq + deassert, 2 threads on 2 masked pins (per thread)", two_threads, &masked2, n, 0 },
		{ "vmmapi_edge_2t", "vm_ioapic_assert_irq + deassert, 2 threads on 2 edge pins (per thread)", two_threads, &edge2, n, 0 },
		{ "kvm_masked_2t", "KVM_IRQ_LINE 1 + 0, 2 threads on 2 masked GSIs (per thread)", two_threads, &kmasked2, nk, nokvm },
	};
	measure_interleaved(masked1, 3);
	measure_interleaved(edge1, 3);
	measure_interleaved(two_threads_each, 3);

	if (!nokvm)
		close(kvm);
	vm_vcpu_close(v[0]);
	vm_vcpu_close(v[1]);
	vm_destroy(ctx);
}

int
main(int argc, char **argv)
{
	double call;

	if (argc > 1 && (tsv = fopen(argv[1], "w")) == NULL) {
		perror(argv[1]);
		return 1;
	}
	bench_irq_pairs();
	bench_vm_run();
	report("rmw_xadd", measure(xadd_ops, NULL, 20000000), "op",
	    "atomic fetch-and-add (lock xadd), uncontended");
	report("rmw_cas", measure(cas_ops, NULL, 20000000), "op",
	    "atomic load + compare-and-swap (lock cmpxchg), uncontended");
	call = measure(getppid_calls, NULL, 2000000);
	report("getppid", call, "call", "syscall(SYS_getppid)");
	report("getppid_pair", 2 * call, "pair", "two getppid() calls: the floor of any kernel pair");
	if (tsv != NULL)
		fclose(tsv);
	return 0;
}
