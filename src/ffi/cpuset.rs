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
    // SAFETY: `dst` is writable for `size` <= CPUSET_MAX_BYTES bytes.
    unsafe { std::ptr::copy_nonoverlapping(cpuset_bytes(set).as_ptr(), dst as *mut u8, size) };
    Ok(())
}

/// Copies `set` as VM_RUN copies an IPI exit's targets in FreeBSD: the
/// first `min(size, sizeof(cpuset_t))` bytes, then zeros to `size`; no
/// size is refused. EFAULT for a NULL buffer with a non-zero size.
///
/// # Safety
/// `dst` is NULL or writable for `size` bytes.
pub unsafe fn copy_out_cpuset_any_size<T>(set: &CpuSet, dst: *mut T, size: usize) -> Result<()> {
    if size == 0 {
        return Ok(());
    }
    if dst.is_null() {
        return Err(Error::Fault);
    }
    let n = size.min(CPUSET_MAX_BYTES);
    // SAFETY: `dst` is writable for `size` >= n bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(cpuset_bytes(set).as_ptr(), dst as *mut u8, n);
        std::ptr::write_bytes((dst as *mut u8).add(n), 0, size - n);
    }
    Ok(())
}

/// A cpuset in its C layout (little-endian words, CPU_MAXSIZE bits).
fn cpuset_bytes(set: &CpuSet) -> [u8; CPUSET_MAX_BYTES] {
    let mut bytes = [0u8; CPUSET_MAX_BYTES];
    for (i, w) in set.words().iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FreeBSD's `vm_get_cpus`: a size below 1 byte or above CPU_MAXSIZE
    /// bits is ERANGE, even for an empty set that would need no bytes.
    #[test]
    fn sizes_outside_1_to_128_bytes_are_erange_even_for_an_empty_set() {
        let mut buf = [0xffu8; CPUSET_MAX_BYTES + 1];
        let empty = CpuSet::default();
        // SAFETY: `buf` holds every size tried.
        unsafe {
            assert_eq!(copy_out_cpuset(&empty, buf.as_mut_ptr(), 0usize), Err(Error::Range));
            assert_eq!(copy_out_cpuset(&empty, buf.as_mut_ptr(), CPUSET_MAX_BYTES + 1), Err(Error::Range));
            assert_eq!(copy_out_cpuset(&empty, buf.as_mut_ptr(), 1usize), Ok(()));
        }
        assert_eq!(buf[..2], [0, 0xff]);
    }
}
