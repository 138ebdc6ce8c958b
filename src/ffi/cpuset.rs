//! `cpuset_t` to and from C, with FreeBSD's size rules.

use crate::cpuset::CpuSet;
use crate::error::{Error, Result};

/// Largest cpuset a caller may pass, in bytes (FreeBSD CPU_MAXSIZE / 8).
const CPUSET_MAX_BYTES: usize = 1024 / 8;

/// Copies `set` into the caller's `size`-byte buffer, zero-filling the
/// rest: ERANGE if `size` is 0, too large, or too small to hold the set's
/// highest member; EFAULT for a NULL buffer.
///
/// # Safety
/// `dst` is NULL or writable for `size` bytes.
pub unsafe fn copy_out_cpuset<T>(set: &CpuSet, dst: *mut T, size: impl TryInto<usize>) -> Result<()> {
    let size: usize = size.try_into().map_err(|_| Error::Range)?;
    if size == 0 || size > CPUSET_MAX_BYTES {
        return Err(Error::Range);
    }
    let needed = set.iter().last().map_or(0, |hi| hi / 8 + 1);
    if size < needed {
        return Err(Error::Range);
    }
    if dst.is_null() {
        return Err(Error::Fault);
    }
    let mut bytes = [0u8; CPUSET_MAX_BYTES];
    for (i, w) in set.words().iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    // SAFETY: `dst` is writable for `size` <= CPUSET_MAX_BYTES bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst as *mut u8, size) };
    Ok(())
}
