//! Handles given to C: `struct vmctx *` (a VM opened by name) and
//! `struct vcpu *` (one vCPU of it).
//!
//! A handle is an id in a process-wide table, not a pointer to Rust memory:
//! C code never dereferences it, and a handle that was closed, or whose VM
//! was destroyed, fails cleanly (EBADF) instead of touching freed memory.
//! Ids are never reused. Each entry holds an `Arc<Vm>`, so a thread inside
//! a call keeps the VM's memory alive while another thread destroys it.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{Arc, RwLock};
use crate::vm::Vm;

/// Opaque VM handle (libvmmapi's `struct vmctx`).
#[allow(non_camel_case_types)]
pub struct vmctx {
    _opaque: [u8; 0],
}

/// Opaque vCPU handle (libvmmapi's `struct vcpu`).
#[allow(non_camel_case_types)]
pub struct vcpu {
    _opaque: [u8; 0],
}

#[derive(Clone)]
enum Entry {
    Ctx(Arc<Vm>),
    Vcpu(Arc<Vm>, usize),
}

/// Handle table lock. Protects: id -> entry. Rank 0: held only to look up,
/// insert or remove, never while calling into the core.
static TABLE: OnceLock<RwLock<HashMap<u64, Entry>>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn table() -> &'static RwLock<HashMap<u64, Entry>> {
    TABLE.get_or_init(|| RwLock::new(HashMap::new()))
}

fn insert(e: Entry) -> u64 {
    // Ids stay 16-byte aligned so they look like (and never collide with)
    // small-integer sentinels C code might compare against.
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed) << 4;
    table().write().insert(id, e);
    id
}

fn lookup(id: u64) -> Result<Entry> {
    table().read().get(&id).cloned().ok_or(Error::Destroyed)
}

/// A new `struct vmctx *` for `vm`.
pub fn new_ctx(vm: Arc<Vm>) -> *mut vmctx {
    insert(Entry::Ctx(vm)) as usize as *mut vmctx
}

/// A new `struct vcpu *` for vCPU `id` of `vm`.
pub fn new_vcpu(vm: Arc<Vm>, id: usize) -> *mut vcpu {
    insert(Entry::Vcpu(vm, id)) as usize as *mut vcpu
}

/// The VM behind a ctx handle: EFAULT for NULL, EBADF for anything that is
/// not a live ctx handle.
pub fn ctx_vm(ctx: *const vmctx) -> Result<Arc<Vm>> {
    if ctx.is_null() {
        return Err(Error::Fault);
    }
    match lookup(ctx as usize as u64)? {
        Entry::Ctx(vm) => Ok(vm),
        Entry::Vcpu(..) => Err(Error::Destroyed),
    }
}

/// The VM and vCPU id behind a vcpu handle.
pub fn vcpu_vm(vcpu: *const vcpu) -> Result<(Arc<Vm>, usize)> {
    if vcpu.is_null() {
        return Err(Error::Fault);
    }
    match lookup(vcpu as usize as u64)? {
        Entry::Vcpu(vm, id) => Ok((vm, id)),
        Entry::Ctx(..) => Err(Error::Destroyed),
    }
}

/// Closes a handle of either kind; EBADF if it is not live.
pub fn close(id: u64) -> Result<()> {
    table().write().remove(&id).map(drop).ok_or(Error::Destroyed)
}
