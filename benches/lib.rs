//! (Empty: the benchmarks are `vmm.rs`, run by `make bench`.)
