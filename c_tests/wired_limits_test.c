/*
 * Wired guest memory at the host's limits: a refused resource is an
 * error and leaves the VM as it was.
 *
 * - At the process's map-count limit (vm.max_map_count), unmapping a
 *   wired map whose first MiB another wired map shares, or that another
 *   wired map adjoins, would need the host to split a locked area:
 *   ENOMEM, both maps stay, still locked (it used to succeed and leave
 *   the other map's pages unlocked).
 * - A wired vm_setup_memory over RLIMIT_MEMLOCK (no CAP_IPC_LOCK) fails
 *   at its low-memory map with ENOMEM and takes back the segment and
 *   the high-memory map it made, unlocking them, so that a smaller
 *   retry works (it used to keep both, and the retry failed).
 */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "vmm_rs.h"
#include "test_util.h"
#include "wired_util.h"

#define MB (1024UL * 1024)
#define PAGE 4096UL

/* A kB field of /proc/self/status ("VmLck:"), or -1. */
static long
status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, strlen(key)) == 0) {
			v = strtol(line + strlen(key), NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Lines of /proc/self/maps: the process's map entries (plus [vsyscall]). */
static long
map_entries(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int c;
	if (f == NULL)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* The maps in guest-physical order: their gpas into `gpas`, their count. */
static int
map_gpas(struct vmctx *ctx, vm_paddr_t *gpas, int max)
{
	vm_paddr_t gpa = 0;
	vm_ooffset_t off;
	int segid, prot, flags, n = 0;
	size_t len;
	while (n < max && vm_mmap_getnext(ctx, &gpa, &segid, &off, &len, &prot, &flags) == 0) {
		CHECK(flags == VM_MEMMAP_F_WIRED);
		gpas[n++] = gpa;
		gpa += len;
	}
	return n;
}

/*
 * Fills the process's memory map up to the limit: a reservation split
 * into areas by alternating protections, then single pages until the
 * host refuses. Returns the reservation (to munmap with *len), or NULL.
 */
static void *
fill_map_count(long max, size_t *len)
{
	long have = map_entries();
	if (have < 0 || have >= max)
		return NULL;
	size_t pages = (size_t)(max - have) + 8;
	*len = pages * PAGE;
	char *p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	for (size_t i = 1; i + 1 < pages && mprotect(p + i * PAGE, PAGE, PROT_NONE) == 0; i += 2)
		;
	/* Alternate protections so that neighbours never merge. */
	for (int prot = PROT_READ; mmap(NULL, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED;
	     prot ^= PROT_READ | PROT_WRITE)
		;
	return p;
}

/*
 * Map A (segment offset 0, 4 MiB) and map B (1 MiB at segment offset
 * `b_off` of a `seglen` segment) are wired; B overlaps A (b_off 0) or
 * adjoins it (b_off 4 MiB: the host merges the two locked areas).
 */
static void
unmap_at_the_map_count_limit(const char *name, size_t seglen, vm_ooffset_t b_off)
{
	long max = 0;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 0;
		fclose(f);
	}
	if (getenv("VMM_RS_UNDER_VALGRIND") != NULL || max <= 0 || max > 262144) {
		/* valgrind needs map entries of its own; a huge limit takes
		 * too long to fill. */
		printf("wired_limits_test: map-count part skipped (limit %ld%s)\n", max,
		    getenv("VMM_RS_UNDER_VALGRIND") != NULL ? ", under valgrind" : "");
		return;
	}
	watchdog_phase(name);
	CHECK_OK(vm_create(name));
	struct vmctx *ctx = vm_open(name);
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return;
	vm_set_memflags(ctx, VM_MEM_F_WIRED);
	CHECK(vm_create_devmem(ctx, VM_FRAMEBUFFER, "fb", seglen) != MAP_FAILED);
	const vm_paddr_t a = 1UL << 32, b = 2UL << 32;
	CHECK_OK(vm_mmap_memseg(ctx, a, VM_FRAMEBUFFER, 0, 4 * MB, PROT_READ | PROT_WRITE));
	CHECK_OK(vm_mmap_memseg(ctx, b, VM_FRAMEBUFFER, b_off, MB, PROT_READ | PROT_WRITE));
	long locked = status_kb("VmLck:");
	CHECK(locked >= (b_off == 0 ? 4096 : 5120));

	size_t fill_len = 0;
	void *fill = fill_map_count(max, &fill_len);
	CHECK(fill != NULL);
	CHECK_ERR(vm_munmap_memseg(ctx, a, 4 * MB), ENOMEM);
	CHECK(status_kb("VmLck:") == locked);
	if (fill != NULL)
		CHECK_OK(munmap(fill, fill_len));
	/* Single pages from the fill stay (a few hundred KiB): harmless. */

	vm_paddr_t gpas[4];
	CHECK(map_gpas(ctx, gpas, 4) == 2 && gpas[0] == a && gpas[1] == b);
	/* With room again, the same call works and B keeps its MiB locked. */
	CHECK_OK(vm_munmap_memseg(ctx, a, 4 * MB));
	CHECK(status_kb("VmLck:") == locked - (b_off == 0 ? 3 : 4) * 1024);
	CHECK(map_gpas(ctx, gpas, 4) == 1 && gpas[0] == b);
	vm_destroy(ctx);
}

static void
setup_over_memlock(void)
{
	watchdog_phase("vm_setup_memory over RLIMIT_MEMLOCK");
	struct rlimit rl;
	CHECK_OK(getrlimit(RLIMIT_MEMLOCK, &rl));
	rl.rlim_cur = 2 * MB;
	if (rl.rlim_max < rl.rlim_cur)
		rl.rlim_cur = rl.rlim_max;
	CHECK_OK(setrlimit(RLIMIT_MEMLOCK, &rl));
	CHECK_OK(drop_ipc_lock());

	CHECK_OK(vm_create("wiredsetup"));
	struct vmctx *ctx = vm_open("wiredsetup");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return;
	long before = status_kb("VmLck:");
	vm_set_memflags(ctx, VM_MEM_F_WIRED);
	vm_set_lowmem_limit(ctx, 4 * MB);
	/* 1 MiB at 4 GiB is wired first, then 4 MiB at 0 is refused. */
	CHECK_ERR(vm_setup_memory(ctx, 5 * MB, VM_MMAP_ALL), ENOMEM);
	size_t seglen = 1;
	CHECK_OK(vm_get_memseg(ctx, VM_SYSMEM, &seglen, NULL, 0));
	CHECK(seglen == 0);
	vm_paddr_t gpas[4];
	CHECK(map_gpas(ctx, gpas, 4) == 0);
	CHECK(status_kb("VmLck:") == before);
	CHECK(vm_get_lowmem_size(ctx) == 0 && vm_get_highmem_size(ctx) == 0);

	/* A size within the limit works, wired. */
	CHECK_OK(vm_setup_memory(ctx, MB, VM_MMAP_ALL));
	CHECK(map_gpas(ctx, gpas, 4) == 1 && gpas[0] == 0);
	CHECK(status_kb("VmLck:") == before + 1024);
	vm_destroy(ctx);
}

int
main(void)
{
	watchdog_start(120, "wired_limits_test");
	if (!memlock_room("wired_limits_test:", 16 * MB))
		return 0;
	unmap_at_the_map_count_limit("wired maps overlapping", 4 * MB, 0);
	unmap_at_the_map_count_limit("wired maps adjoining", 8 * MB, 4 * MB);
	setup_over_memlock(); /* drops CAP_IPC_LOCK: last */
	return test_finish("wired_limits_test");
}
