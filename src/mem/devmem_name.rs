//! The devfs rules a devmem segment's name meets, as FreeBSD 14 checks
//! them when `vm_alloc_memseg` creates `/dev/vmm.io/<vm>.<name>`.

use crate::error::{Error, Result};

use super::GuestMemory;

impl GuestMemory {
    /// The checks devfs (`prep_devname`, `devfs_dev_exists`) makes on
    /// `/dev/vmm.io/<vm>.<name>` that depend on `name`: `Inval` for
    /// whitespace, `"`, a trailing slash or a `.`/`..` component after the
    /// first; `Exist` if the name (with runs of slashes collapsed) equals
    /// another devmem segment's name or is a directory prefix of it, or the
    /// reverse.
    pub(super) fn check_devmem_name(&self, name: &[u8]) -> Result<()> {
        if name
            .iter()
            .any(|&c| c == b' ' || (b'\t'..=b'\r').contains(&c) || c == b'"')
        {
            return Err(Error::Inval);
        }
        let norm = collapse_slashes(name);
        if norm.last() == Some(&b'/') {
            return Err(Error::Inval);
        }
        if norm
            .split(|&c| c == b'/')
            .skip(1)
            .any(|comp| comp == b"." || comp == b"..")
        {
            return Err(Error::Inval);
        }
        for seg in self.segs.iter().flatten().filter(|s| !s.sysmem) {
            let other = collapse_slashes(&seg.name);
            if path_contains(&norm, &other) || path_contains(&other, &norm) {
                return Err(Error::Exist);
            }
        }
        Ok(())
    }
}

fn collapse_slashes(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &c in name {
        if !(c == b'/' && out.last() == Some(&b'/')) {
            out.push(c);
        }
    }
    out
}

/// devfs `devfs_pathpath`: `p1` is `p2` or lies below directory `p2`.
fn path_contains(p1: &[u8], p2: &[u8]) -> bool {
    p1 == p2 || (p1.len() > p2.len() && p1.starts_with(p2) && p1[p2.len()] == b'/')
}
