//! The C face of the library: the only place with `extern "C"` and raw
//! pointers. Every entry point checks its pointers and ids, maps core
//! `Result`s to errno (0, or -1 with errno, like an ioctl), and runs inside
//! the panic boundary (`ffi_boundary!`).

pub mod abi;
mod cstr;
mod errno;
pub mod handle;
pub mod lifecycle;
mod panic;
