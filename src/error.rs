//! The core's error type. Variants are named after the errno the C face
//! returns for them (the FreeBSD kernel's choice for the same failure), but
//! the core itself knows nothing of errno: `ffi` does the mapping.

/// Why a VMM operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Bad argument: unknown register, vCPU id or pin out of range, bad
    /// alignment, overlapping mapping (EINVAL).
    Inval,
    /// The object is in a state that forbids the operation (EBUSY).
    Busy,
    /// No such object: VM name, memory segment, mapping (ENOENT).
    NoEnt,
    /// The object already exists (EEXIST).
    Exist,
    /// The operation was already done, e.g. a second VM_SUSPEND (EALREADY).
    Already,
    /// A bad address (EFAULT).
    Fault,
    /// Assert count at its maximum (E2BIG).
    TooBig,
    /// Deassert of a pin whose count is zero (ERANGE).
    Range,
    /// Out of memory or mapping slots (ENOMEM).
    NoMem,
    /// No space left, e.g. no free memory-map slot (ENOSPC).
    NoSpc,
    /// The VM behind a handle has been destroyed (EBADF).
    Destroyed,
    /// A name does not fit its buffer (ENAMETOOLONG).
    NameTooLong,
    /// Not supported by this VM or backend (ENODEV).
    NoDev,
    /// The caller was interrupted, e.g. the VM was destroyed during a wait
    /// (EINTR).
    Intr,
    /// A device emulated in the library refused a guest access (VM_RUN
    /// fails with EIO, as FreeBSD's in-kernel port handlers make it).
    Io,
    /// The call would wait for the calling thread itself: a guest callback
    /// asking for a vCPU of the VM it runs in to stand still (EDEADLK).
    Deadlock,
    /// The guest's local APIC ICR write asked for an IPI the APIC has no
    /// delivery for (SMI, remote read): FreeBSD's
    /// `vlapic_icrlo_write_handler` returns 1 for it, which VM_RUN (an
    /// MMIO write) and VM_SET_KERNEMU_DEV pass out as errno 1 (EPERM).
    Perm,
}

/// Result of a core operation.
pub type Result<T> = core::result::Result<T, Error>;
