//! vmm_rs: the bhyve VMM core as a library.
