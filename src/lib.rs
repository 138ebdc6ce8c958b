//! vmm_rs: the bhyve VMM core (`vmm.c`, `vioapic.c`, the interrupt-delivery
//! part of `vlapic.c`) as a library with a C face.
//!
//! Crate map:
//! - [`error`]: the core error type.
//! - [`sync`]: lock facade (parking_lot, or loom under `cfg(loom)`).
//! - [`cpuset`]: sets of vCPU ids.
//! - [`thread_slot`]: per-thread slots for single-writer counters;
//!   [`thread_exit`]: per-thread values dropped at thread exit (POSIX keys).
//! - [`vcpu`]: the vCPU state machine, notification and runblock;
//!   [`stats`]: its statistics (VM_STATS).
//! - [`regs`]: per-vCPU registers, segments, capabilities, intinfo, and
//!   the states loaders set up; [`loader`]: those that write guest RAM.
//! - [`rendezvous`]: the vCPU rendezvous (`vm_smp_rendezvous`);
//!   [`peer_wait`]: a vCPU's waits for the others of its VM (the suspend
//!   wait, an RTE write's `block_run`s), as the C face's cycle check sees
//!   them.
//! - [`vm`]: the VM, its cpusets, suspend, and vCPU locking.
//! - [`vioapic`], [`vlapic`]: the I/O APIC and the local APICs;
//!   [`vm_intr`]: the VM's interrupt entry points (ioctls, MMIO).
//! - [`vatpic`]: the 8259 pair (ports 0x20/0x21, 0xa0/0xa1, ELCR,
//!   VM_ISA_*, ExtINT).
//! - [`vrtc`]: the RTC and CMOS (ports 0x70/0x71, VM_RTC_*, IRQ 8);
//!   [`vpmtmr`]: the ACPI PM timer (port 0x408); [`vhpet`]: the HPET;
//!   [`vatpit`]: the 8254 PIT (ports 0x40-0x43, 0x61); [`callout`]: how
//!   their timer deadlines are published to the run loop;
//!   [`callout_thread`]: the thread that fires them (and the local APIC
//!   timers) when no vCPU polls.
//! - [`registry`]: the process-wide table of named VMs (not under loom).
//! - [`exit`], [`backend`], [`run`]: VM exits, the VMRUN trait (with the
//!   guest RAM it reaches), the run loop;
//!   [`cpuid`]: the guest's CPUID; [`tsc`]: the clock its TSC counts.
//! - [`guest`], [`sim`]: guest programs (scripted or C callbacks) and the
//!   simulated backend that runs them.
//! - [`mem`]: guest memory: segments, guest-physical maps, host access, a
//!   guest's own loads and stores, and
//!   the libvmmapi memory layout (`vm_setup_memory`, `vm_map_gpa`);
//!   [`memsize`]: bhyve's memory-size argument (`vm_parse_memsize`);
//!   [`gla2gpa`]: the guest page-table walk (VM_GLA2GPA); [`guest_copy`]:
//!   guest-linear ranges as host pieces (`vm_copy_setup`).
//! - [`ffi`]: the C ABI (ioctl-shaped entry point and libvmmapi functions).

pub mod backend;
pub mod callout;
pub mod callout_thread;
pub mod cpuid;
pub mod cpuset;
pub mod error;
pub mod exit;
pub mod gla2gpa;
pub mod guest;
pub mod guest_copy;
pub mod loader;
pub mod mem;
pub mod memsize;
pub mod peer_wait;
// A process-wide static table: loom primitives cannot live in statics,
// and model checking has no use for it.
#[cfg(not(loom))]
pub mod registry;
pub mod regs;
pub mod rendezvous;
pub mod run;
pub mod sim;
pub mod stats;
pub mod sync;
#[cfg(not(loom))]
pub mod thread_exit;
pub mod thread_slot;
pub mod tsc;
pub mod vatpic;
pub mod vatpit;
pub mod vcpu;
pub mod vhpet;
pub mod vioapic;
pub mod vlapic;
pub mod vm;
pub mod vm_intr;
pub mod vpmtmr;
pub mod vrtc;

#[cfg(all(test, not(loom)))]
mod test_util;

#[cfg(not(loom))]
pub mod ffi;
