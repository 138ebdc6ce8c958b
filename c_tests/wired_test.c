/*
 * Wired guest memory (bhyve -S: vm_set_memflags(VM_MEM_F_WIRED)): a wired
 * map locks its host pages, unmapping it unlocks them, and a map the host
 * will not lock (RLIMIT_MEMLOCK without CAP_IPC_LOCK) fails with ENOMEM
 * and leaves no map behind, as FreeBSD's vm_map_wire failure does.
 */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "vmm_rs.h"
#include "test_util.h"
#include "wired_util.h"

#define MB (1024UL * 1024)

/*
 * Whether host bytes [p, p + len) are locked, from /proc/self/smaps
 * (mlock sets VmFlags "lo" on exactly the locked range): 1 if every
 * mapping the range overlaps is, 0 if none is, -1 if mixed or unmapped.
 */
static int
host_locked(const void *p, size_t len)
{
	uintptr_t start = (uintptr_t)p, end = start + len;
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int overlapping = 0, locked = 0, unlocked = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long a, b;
		char dash;
		if (sscanf(line, "%lx%c%lx ", &a, &dash, &b) == 3 && dash == '-') {
			overlapping = a < end && start < b;
			continue;
		}
		if (overlapping && strncmp(line, "VmFlags:", 8) == 0) {
			if (strstr(line, " lo") != NULL)
				locked++;
			else
				unlocked++;
		}
	}
	fclose(f);
	if (locked > 0 && unlocked == 0)
		return 1;
	if (unlocked > 0 && locked == 0)
		return 0;
	return -1;
}

int
main(void)
{
	struct vmctx *ctx;
	vm_paddr_t gpa;
	vm_ooffset_t off;
	int segid, prot, flags;
	size_t len;
	char *host;

	watchdog_start(60, "wired_test");
	/* Lock up to the hard limit; without that room (or CAP_IPC_LOCK) the test
	 * cannot run. */
	if (!memlock_room("wired_test:", 16 * MB))
		return 0;
	CHECK_OK(vm_create("wired"));
	ctx = vm_open("wired");
	CHECK(ctx != NULL);
	if (ctx == NULL)
		return test_finish("wired_test");

	/* Wired: the map says so and its host pages are locked. */
	vm_set_memflags(ctx, VM_MEM_F_WIRED);
	CHECK_OK(vm_setup_memory(ctx, 4 * MB, VM_MMAP_ALL));
	gpa = 0;
	CHECK_OK(vm_mmap_getnext(ctx, &gpa, &segid, &off, &len, &prot, &flags));
	CHECK(gpa == 0 && len == 4 * MB && flags == VM_MEMMAP_F_WIRED);
	host = vm_map_gpa(ctx, 0, 4 * MB);
	CHECK(host != NULL);
	CHECK(host_locked(host, 4 * MB) == 1);

	/*
	 * Two more maps of the segment's first MiB: one not wired (through
	 * the ioctl), one wired (libvmmapi, memflags). When the 4 MiB map
	 * goes, the wired alias keeps its MiB locked; when it goes too,
	 * nothing is locked although the unwired map remains.
	 */
	struct vm_memmap plain = { .gpa = 64 * MB, .segid = VM_SYSMEM, .segoff = 0,
	    .len = MB, .prot = PROT_READ, .flags = 0 };
	CHECK_OK(vmm_ioctl(ctx, VM_MMAP_MEMSEG, &plain));
	CHECK_OK(vm_mmap_memseg(ctx, 128 * MB, VM_SYSMEM, 0, MB, PROT_READ));
	CHECK_OK(vm_munmap_memseg(ctx, 0, 4 * MB));
	CHECK(host_locked(host, MB) == 1 && host_locked(host + MB, 3 * MB) == 0);
	CHECK_OK(vm_munmap_memseg(ctx, 128 * MB, MB));
	CHECK(host_locked(host, 4 * MB) == 0);
	CHECK_OK(vm_munmap_memseg(ctx, 64 * MB, MB));

	/* Over RLIMIT_MEMLOCK without the privilege: ENOMEM, no map. */
	struct rlimit rl;
	CHECK_OK(getrlimit(RLIMIT_MEMLOCK, &rl));
	rl.rlim_cur = MB;
	CHECK_OK(setrlimit(RLIMIT_MEMLOCK, &rl));
	CHECK_OK(drop_ipc_lock());
	CHECK_ERR(vm_setup_memory(ctx, 4 * MB, VM_MMAP_ALL), ENOMEM);
	CHECK_ERR(vm_mmap_memseg(ctx, 0, VM_SYSMEM, 0, 2 * MB, PROT_READ | PROT_WRITE | PROT_EXEC), ENOMEM);
	gpa = 0;
	CHECK_ERR(vm_mmap_getnext(ctx, &gpa, &segid, &off, &len, &prot, &flags), ENOENT);
	CHECK(host_locked(host, 4 * MB) == 0);

	/* Within the limit it works, and the memory is usable. */
	CHECK_OK(vm_mmap_memseg(ctx, 0, VM_SYSMEM, 0, MB / 2, PROT_READ | PROT_WRITE | PROT_EXEC));
	CHECK(host_locked(host, MB / 2) == 1 && host_locked(host + MB / 2, MB / 2) == 0);
	memcpy(host, "wired", 6);
	CHECK(memcmp(vm_map_gpa(ctx, 0, 6), "wired", 6) == 0);

	/* Unwired memory is not limited. */
	vm_set_memflags(ctx, 0);
	CHECK_OK(vm_mmap_memseg(ctx, 2 * MB, VM_SYSMEM, 2 * MB, 2 * MB, PROT_READ | PROT_WRITE | PROT_EXEC));
	CHECK(host_locked(host + 2 * MB, 2 * MB) == 0);

	/* Destroy releases wired pages too (the range may be gone already). */
	CHECK(host_locked(host, MB / 2) == 1);
	vm_destroy(ctx);
	CHECK(host_locked(host, MB / 2) != 1);
	return test_finish("wired_test");
}
