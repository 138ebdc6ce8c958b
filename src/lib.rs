//! vmm_rs: the bhyve VMM core (`vmm.c`, `vioapic.c`, the interrupt-delivery
//! part of `vlapic.c`) as a library with a C face.
//!
//! Crate map:
//! - [`error`]: the core error type.
//! - [`sync`]: lock facade (parking_lot, or loom under `cfg(loom)`).
//! - [`mem`]: guest memory: segments, guest-physical maps, host access, and
//!   the libvmmapi memory layout (`vm_setup_memory`, `vm_map_gpa`).
//! - [`ffi`]: the C ABI (ioctl-shaped entry point and libvmmapi functions).

pub mod error;
/// cbindgen:ignore
pub mod mem;
pub mod sync;

#[cfg(not(loom))]
pub mod ffi;
