//! The C face of the library: the only place with `extern "C"` and raw
//! pointers. Every entry point checks its pointers and ids, maps core
//! `Result`s to errno (0, or -1 with errno, like an ioctl), and runs inside
//! the panic boundary (`ffi_boundary!`).
//!
//! - [`abi`]: FreeBSD 14 structs, enums and ioctl numbers.
//! - [`ioctl`]: `vmm_ioctl`, lock classes; [`commands`]: the handlers.
//! - [`lifecycle`], [`vmmapi`], [`memory`]: the libvmmapi functions
//!   (with `apic` and `devices`, which also hold their commands'
//!   handlers).
//! - [`handle`]: `struct vmctx *` / `struct vcpu *` handles.
//!
//! # Safety
//!
//! Every `unsafe extern "C"` function here has the one contract the header
//! states at its top: handles are checked, and every other pointer is NULL
//! (refused with EFAULT) or valid for what its type names for the duration
//! of the call. Hence no per-function `# Safety` sections.
#![allow(clippy::missing_safety_doc)]

pub mod abi;
mod apic;
#[cfg(all(test, not(loom)))]
mod libvmmapi_parity_tests;
mod call;
mod cancel;
pub mod commands;
mod cpuset;
mod copy;
mod cstr;
mod devices;
mod errno;
pub mod guest;
mod identity;
mod inout_str;
mod inst_emul;
pub mod handle;
pub mod ioctl;
pub mod lifecycle;
mod layout;
pub mod memory;
mod panic;
mod passthrough;
mod reentry;
pub mod run;
mod stats;
pub mod vmmapi;
