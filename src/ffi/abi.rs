//! FreeBSD 14 `vmm.h` / `vmm_dev.h` ABI: argument structs, enums and ioctl
//! command numbers, with FreeBSD's names.
