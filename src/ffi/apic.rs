//! Interrupt-controller commands. Placeholder until the vioapic/vlapic
//! core lands: every such command fails with ENODEV.

use std::ffi::c_void;

use crate::error::{Error, Result};
use crate::vm::{VcpuLock, Vm};

pub(crate) unsafe fn vcpu_cmd(_vm: &Vm, _lock: &VcpuLock<'_>, _cmd: u64, _arg: *mut c_void) -> Result<()> {
    Err(Error::NoDev)
}

pub(crate) unsafe fn vm_cmd(_vm: &Vm, _cmd: u64, _arg: *mut c_void) -> Result<()> {
    Err(Error::NoDev)
}
