//! The C face of the library: the only place with `extern "C"` and raw
//! pointers. Every entry point checks its pointers and ids, maps core
//! `Result`s to errno, and runs inside the panic boundary.

pub mod abi;
