//! The process-wide registry of named VMs (what `/dev/vmm/<name>` is on
//! FreeBSD): create, look up, destroy.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, Mutex};
use crate::vm::{Vm, DEFAULT_MAXCPUS};
use crate::cpuset::CPUSET_BITS;

/// Longest VM name (FreeBSD 14 `VM_MAX_NAMELEN`: SPECNAMELEN less the
/// device prefix and suffix room).
pub const MAX_NAMELEN: usize = 229;

/// Registry mutex. Protects: the name -> VM map. Rank 0: taken with no
/// other lock held, and held for the map update and, on a create, while
/// the new VM is built and its timer thread started (the thread's
/// join-handle mutex, a leaf); never across a call into an existing VM.
static VMS: OnceLock<Mutex<HashMap<String, Arc<Vm>>>> = OnceLock::new();

/// vCPUs per new VM (FreeBSD's hw.vmm.maxcpu tunable); 0 = not yet set.
static MAXCPUS: AtomicUsize = AtomicUsize::new(0);

fn vms() -> &'static Mutex<HashMap<String, Arc<Vm>>> {
    VMS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The number of vCPUs new VMs get: set by [`set_default_maxcpus`], else
/// the `VMM_RS_MAXCPU` environment variable, else FreeBSD's 16.
pub fn default_maxcpus() -> usize {
    match MAXCPUS.load(Ordering::Relaxed) {
        0 => std::env::var("VMM_RS_MAXCPU")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| (1..=CPUSET_BITS).contains(n))
            .unwrap_or(DEFAULT_MAXCPUS),
        n => n,
    }
}

/// Sets the vCPU count of VMs created from now on (1..=256).
pub fn set_default_maxcpus(n: usize) -> Result<()> {
    if !(1..=CPUSET_BITS).contains(&n) {
        return Err(Error::Inval);
    }
    MAXCPUS.store(n, Ordering::Relaxed);
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAMELEN || name.contains('/') {
        return Err(Error::Inval);
    }
    Ok(())
}

/// `vm_create`: EINVAL for a bad name, EEXIST if the name is taken.
pub fn create(name: &str) -> Result<Arc<Vm>> {
    check_name(name)?;
    let mut map = vms().lock();
    if map.contains_key(name) {
        return Err(Error::Exist);
    }
    insert_new(&mut map, name)
}

/// `vm_openf` with VMMAPI_OPEN_CREATE: the VM named `name`, created if
/// there is none, in one step under the registry lock, so that threads
/// racing to open-or-create one name all get the same VM and only one of
/// them sees `true` (it created the VM). EINVAL for a bad name.
pub fn open_or_create(name: &str) -> Result<(Arc<Vm>, bool)> {
    check_name(name)?;
    let mut map = vms().lock();
    if let Some(vm) = map.get(name) {
        return Ok((vm.clone(), false));
    }
    Ok((insert_new(&mut map, name)?, true))
}

/// Builds a VM and enters it in `map` (whose lock the caller holds).
fn insert_new(map: &mut HashMap<String, Arc<Vm>>, name: &str) -> Result<Arc<Vm>> {
    let vm = Arc::new(Vm::with_sim_backend(name, default_maxcpus())?);
    vm.start_callout_thread()?;
    map.insert(name.to_owned(), vm.clone());
    Ok(vm)
}

/// `vm_open`: ENOENT if no VM has that name.
pub fn open(name: &str) -> Result<Arc<Vm>> {
    check_name(name).map_err(|_| Error::NoEnt)?;
    vms().lock().get(name).cloned().ok_or(Error::NoEnt)
}

/// `vm_destroy`: frees the name and tears the VM down. Threads inside
/// calls on it finish or fail; the memory of the `Vm` lives until the last
/// handle is closed.
pub fn destroy(vm: &Arc<Vm>) -> Result<()> {
    {
        let mut map = vms().lock();
        match map.get(vm.name()) {
            Some(v) if Arc::ptr_eq(v, vm) => {
                map.remove(vm.name());
            }
            _ => return Err(Error::Destroyed),
        }
    }
    vm.destroy();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_reusable_after_destroy() {
        assert_eq!(create("").err(), Some(Error::Inval));
        assert_eq!(create(&"x".repeat(MAX_NAMELEN + 1)).err(), Some(Error::Inval));
        let vm = create("registry-test").unwrap();
        assert_eq!(create("registry-test").err(), Some(Error::Exist));
        assert!(Arc::ptr_eq(&open("registry-test").unwrap(), &vm));
        destroy(&vm).unwrap();
        assert!(vm.is_destroyed());
        assert_eq!(open("registry-test").err(), Some(Error::NoEnt));
        assert_eq!(destroy(&vm), Err(Error::Destroyed));
        let again = create("registry-test").unwrap();
        destroy(&again).unwrap();
    }

    #[test]
    fn open_or_create_creates_once() {
        assert_eq!(open_or_create("a/b").err(), Some(Error::Inval));
        let (vm, created) = open_or_create("registry-openf").unwrap();
        assert!(created);
        let (again, created) = open_or_create("registry-openf").unwrap();
        assert!(!created && Arc::ptr_eq(&vm, &again));
        assert_eq!(create("registry-openf").err(), Some(Error::Exist));
        destroy(&vm).unwrap();
        let (fresh, created) = open_or_create("registry-openf").unwrap();
        assert!(created && !Arc::ptr_eq(&vm, &fresh));
        destroy(&fresh).unwrap();
    }

    #[test]
    fn the_longest_name_is_accepted() {
        let name = "r".repeat(MAX_NAMELEN);
        let vm = create(&name).unwrap();
        assert!(Arc::ptr_eq(&open(&name).unwrap(), &vm));
        destroy(&vm).unwrap();
    }

    /// A handle to a destroyed VM cannot destroy the new VM that took its
    /// name.
    #[test]
    fn a_stale_handle_does_not_destroy_the_vm_that_reused_its_name() {
        let old = create("registry-stale").unwrap();
        destroy(&old).unwrap();
        let new = create("registry-stale").unwrap();
        assert_eq!(destroy(&old), Err(Error::Destroyed));
        assert!(!new.is_destroyed());
        assert!(Arc::ptr_eq(&open("registry-stale").unwrap(), &new));
        destroy(&new).unwrap();
    }
}
