/*
 * VM lifecycle through libvmmapi and the ioctl face: names, handles,
 * topology, and the generic errors of vmm_ioctl (ENOTTY, EFAULT, EBADF).
 */
#include "vmm_rs.h"
#include "test_util.h"

int
main(void)
{
	char longname[VM_MAX_NAMELEN + 2];
	struct vmctx *ctx, *ctx2;
	struct vcpu *vcpu;
	uint16_t s, c, t, m;

	watchdog_start(30, "lifecycle_test");

	/* Names. */
	CHECK_ERR(vm_create(""), EINVAL);
	CHECK_ERR(vm_create(NULL), EFAULT);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	CHECK_ERR(vm_create(longname), EINVAL);
	longname[VM_MAX_NAMELEN] = '\0'; /* exactly VM_MAX_NAMELEN chars */
	CHECK_OK(vm_create(longname));
	ctx = vm_open(longname);
	CHECK(ctx != NULL);
	vm_destroy(ctx);

	CHECK_OK(vm_create("life"));
	CHECK_ERR(vm_create("life"), EEXIST);
	errno = 0;
	CHECK(vm_open("no-such-vm") == NULL && errno == ENOENT);
	errno = 0;
	CHECK(vm_open(NULL) == NULL && errno == EFAULT);

	ctx = vm_open("life");
	ctx2 = vm_open("life");
	CHECK(ctx != NULL && ctx2 != NULL && ctx != ctx2);

	/* vCPU handles: FreeBSD's default of 16 vCPUs. */
	vcpu = vm_vcpu_open(ctx, 15);
	CHECK(vcpu != NULL);
	CHECK(vcpu_id(vcpu) == 15);
	errno = 0;
	CHECK(vm_vcpu_open(ctx, 16) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(vm_vcpu_open(ctx, -1) == NULL && errno == EINVAL);
	errno = 0;
	CHECK(vm_vcpu_open(NULL, 0) == NULL && errno == EFAULT);

	/* Topology: default 1/1/1 with maxcpus 16; product above maxcpus EINVAL. */
	CHECK_OK(vm_get_topology(ctx, &s, &c, &t, &m));
	CHECK(s == 1 && c == 1 && t == 1 && m == 16);
	CHECK_ERR(vm_set_topology(ctx, 4, 2, 4, 0), EINVAL);
	CHECK_OK(vm_set_topology(ctx, 2, 4, 2, 0));
	CHECK_OK(vm_get_topology(ctx2, &s, &c, &t, &m));
	CHECK(s == 2 && c == 4 && t == 2 && m == 16);
	CHECK_ERR(vm_get_topology(ctx, NULL, &c, &t, &m), EFAULT);

	/* Generic ioctl errors. */
	{
		struct vm_cpu_topology topo;
		CHECK_ERR(vmm_ioctl(ctx, 0xdeadbeef, &topo), ENOTTY);
		CHECK_ERR(vmm_ioctl(ctx, VM_GET_TOPOLOGY, NULL), EFAULT);
		CHECK_OK(vmm_ioctl(ctx, VM_GET_TOPOLOGY, &topo));
		CHECK(topo.sockets == 2 && topo.maxcpus == 16);
		CHECK_ERR(vmm_ioctl(NULL, VM_GET_TOPOLOGY, &topo), EFAULT);
	}

	/* A closed handle and a destroyed VM fail cleanly. */
	vm_close(ctx2);
	{
		struct vm_cpu_topology topo;
		CHECK_ERR(vmm_ioctl(ctx2, VM_GET_TOPOLOGY, &topo), EBADF);
	}
	ctx2 = vm_open("life");
	vm_destroy(ctx);
	CHECK_ERR(vm_set_register(vcpu, VM_REG_GUEST_RAX, 1), EBADF);
	CHECK_ERR(vm_suspend(ctx2, VM_SUSPEND_POWEROFF), EBADF);
	errno = 0;
	CHECK(vm_open("life") == NULL && errno == ENOENT);
	/* The name is free again. */
	CHECK_OK(vm_create("life"));
	ctx = vm_open("life");
	CHECK(ctx != NULL);
	CHECK_ERR(vm_set_topology(ctx2, 1, 1, 1, 0), EBADF);
	vm_vcpu_close(vcpu);
	vm_close(ctx2);
	vm_destroy(ctx);

	/* Configurable maximum. */
	CHECK_ERR(vmm_rs_set_maxcpus(0), EINVAL);
	CHECK_ERR(vmm_rs_set_maxcpus(257), EINVAL);
	CHECK_OK(vmm_rs_set_maxcpus(64));
	CHECK_OK(vm_create("big"));
	ctx = vm_open("big");
	vcpu = vm_vcpu_open(ctx, 63);
	CHECK(vcpu != NULL);
	CHECK_OK(vm_get_topology(ctx, &s, &c, &t, &m));
	CHECK(m == 64);
	vm_vcpu_close(vcpu);
	vm_destroy(ctx);
	CHECK_OK(vmm_rs_set_maxcpus(VM_MAXCPU));

	return test_finish("lifecycle_test");
}
