//! Handles given to C: `struct vmctx *` (a VM opened by name) and
//! `struct vcpu *` (one vCPU of it).
//!
//! A handle is an id in a process-wide table, not a pointer to Rust memory:
//! C code never dereferences it, and a handle that was closed, or whose VM
//! was destroyed, fails cleanly (EBADF) instead of touching freed memory.
//! Ids are never reused. Each entry holds an `Arc<Vm>`, so a thread inside
//! a call keeps the VM's memory alive while another thread destroys it.
//!
//! The hot calls (asserting a pin, VM_RUN) resolve their handle through a
//! per-thread cache of the last handle used ([`with_ctx`], [`with_vcpu`]):
//! no lock, no hashing and no reference-count traffic shared with other
//! threads. Closing any handle bumps a global generation, which empties
//! every cache at its next use, so a closed handle still fails with EBADF.
//! The cache's `Arc` is dropped when the thread exits, also if the thread
//! first called in while exiting (a C thread's key destructor).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{Arc, RwLock};
use crate::thread_exit::ThreadExitKey;
use crate::vm::{VcpuLock, Vm};

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
    /// A VM, and its name NUL-terminated for `vm_get_name` (kept as long
    /// as the handle, as libvmmapi keeps it in its `struct vmctx`).
    Ctx(Arc<Vm>, std::sync::Arc<CString>),
    Vcpu(Arc<Vm>, usize),
}

/// Handle table lock. Protects: id -> entry. Rank 0: held only to look up,
/// insert or remove, never while calling into the core.
static TABLE: OnceLock<RwLock<HashMap<u64, Entry>>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Bumped by every close: per-thread caches made before it are stale.
static GENERATION: AtomicU64 = AtomicU64::new(0);

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
    // A name from C holds no NUL; one from Rust is cut at the first.
    let name = CString::new(vm.name().split('\0').next().unwrap_or_default()).unwrap_or_default();
    insert(Entry::Ctx(vm, std::sync::Arc::new(name))) as usize as *mut vmctx
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
        Entry::Ctx(vm, _) => Ok(vm),
        Entry::Vcpu(..) => Err(Error::Destroyed),
    }
}

/// The name kept with a ctx handle (see [`ctx_vm`]; EBADF too if the VM
/// was destroyed). Its buffer lives as long as the handle's entry.
pub fn live_ctx_name(ctx: *const vmctx) -> Result<std::sync::Arc<CString>> {
    if ctx.is_null() {
        return Err(Error::Fault);
    }
    match lookup(ctx as usize as u64)? {
        Entry::Ctx(vm, name) => {
            vm.check_alive()?;
            Ok(name)
        }
        Entry::Vcpu(..) => Err(Error::Destroyed),
    }
}

/// [`ctx_vm`], and EBADF too if the VM was destroyed.
pub fn live_ctx_vm(ctx: *const vmctx) -> Result<Arc<Vm>> {
    let vm = ctx_vm(ctx)?;
    vm.check_alive()?;
    Ok(vm)
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

/// Runs `f` with the vCPU behind `vcpu` held the way lock-one ioctls
/// hold it (FROZEN, waiting while it runs): what the libvmmapi calls that
/// are not single ioctls (`vcpu_reset`, `vm_copy_setup`, ...) need.
pub fn with_locked_vcpu<R>(vcpu: *const vcpu, f: impl FnOnce(&Vm, &VcpuLock<'_>) -> Result<R>) -> Result<R> {
    let (vm, id) = vcpu_vm(vcpu)?;
    let wait = super::reentry::wait_for(&vm, super::reentry::Waits::One(id))?;
    let lock = vm.lock_one(id)?;
    drop(wait);
    f(&vm, &lock)
}

/// Closes a ctx handle: EFAULT for NULL, EBADF for anything that is not a
/// live ctx handle (a vcpu handle stays open).
pub fn close_ctx(ctx: *const vmctx) -> Result<()> {
    close(ctx as usize as u64, |e| matches!(e, Entry::Ctx(..)))
}

/// Closes a vcpu handle, as [`close_ctx`] a ctx handle.
pub fn close_vcpu(vcpu: *const vcpu) -> Result<()> {
    close(vcpu as usize as u64, |e| matches!(e, Entry::Vcpu(..)))
}

fn close(id: u64, of_kind: impl Fn(&Entry) -> bool) -> Result<()> {
    if id == 0 {
        return Err(Error::Fault);
    }
    let removed = {
        let mut t = table().write();
        match t.get(&id) {
            Some(e) if of_kind(e) => t.remove(&id),
            _ => None,
        }
    };
    let closed = removed.map(drop).ok_or(Error::Destroyed);
    if closed.is_ok() {
        GENERATION.fetch_add(1, Ordering::SeqCst);
    }
    closed
}

/// The hot half of a thread's cache of its last resolved handle: plain
/// cells (no destructor, so reaching them is one thread-pointer offset).
/// `vm` points into the `Arc` that [`OWNED`] holds for the same handle.
struct Hot {
    /// The cached handle; `EMPTY` when there is none.
    id: Cell<u64>,
    generation: Cell<u64>,
    vm: Cell<*const Vm>,
    /// The vCPU id of a vcpu handle; `NOT_VCPU` for a ctx handle.
    vcpu: Cell<usize>,
    /// Calls of this thread in progress that use a cached VM (C callbacks
    /// can call back in, with other handles).
    depth: Cell<u32>,
    /// The outermost call level (1 = outermost) that started on the
    /// cached entry since it was installed; `NOT_USED` if none. Calls
    /// nest, so that call is still running iff `depth` reaches its level:
    /// only then must a replaced entry be parked.
    used_from: Cell<u32>,
    /// The level of the innermost call whose entry `OWNED` parked (0:
    /// none), dropped when `depth` falls below it.
    parked_top: Cell<u32>,
}

impl Hot {
    /// Whether the cache holds handle `id`, still live (no handle was
    /// closed since it was filled).
    #[inline(always)]
    fn holds(&self, id: u64) -> bool {
        self.id.get() == id && self.generation.get() == GENERATION.load(Ordering::SeqCst)
    }
}

const NOT_VCPU: usize = usize::MAX;
/// `Hot::used_from` of an entry no call has used yet.
const NOT_USED: u32 = u32::MAX;
/// No handle cached: never a handle (those are multiples of 16) nor NULL,
/// so neither hits.
const EMPTY: u64 = u64::MAX;
/// `Hot::generation` of an empty cache: never `GENERATION` (2^64 closes
/// away), so no id, EMPTY included (C may pass `(void *)-1`), hits it.
const NO_GENERATION: u64 = u64::MAX;

/// The owning half: the cached entry's `Arc`, and entries replaced while
/// a running call uses their VM, each with the level of the outermost
/// such call (dropped when that call returns). Touched only on a cache
/// miss.
struct Owned {
    entry: Option<Entry>,
    parked: Vec<(u32, Entry)>,
}

impl Drop for Owned {
    /// At thread exit: the cached pointer must not outlive the `Arc`.
    fn drop(&mut self) {
        let _ = HOT.try_with(|h| {
            h.id.set(EMPTY);
            h.generation.set(NO_GENERATION);
        });
    }
}

/// The thread's [`Owned`], dropped at thread exit, also when the thread's
/// first call is made while it exits (see [`ThreadExitKey`]).
static OWNED: ThreadExitKey<RefCell<Owned>> = ThreadExitKey::new();

thread_local! {
    // Const-initialised: no lazy-initialisation check on the hot path.
    static HOT: Hot = const {
        Hot {
            id: Cell::new(EMPTY),
            generation: Cell::new(NO_GENERATION),
            vm: Cell::new(std::ptr::null()),
            vcpu: Cell::new(NOT_VCPU),
            depth: Cell::new(0),
            used_from: Cell::new(NOT_USED),
            parked_top: Cell::new(0),
        }
    };
}

/// Ends a cached use (also on unwinding).
struct Using<'a>(&'a Hot);

impl Drop for Using<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let h = self.0;
        let depth = h.depth.get() - 1;
        h.depth.set(depth);
        if depth < h.parked_top.get() {
            drop_parked(h, depth);
        }
    }
}

#[cold]
#[inline(never)]
fn drop_parked(h: &Hot, depth: u32) {
    // Levels rise along the list: while a call runs, every entry parked
    // after its own is used from deeper levels.
    let top = OWNED.with_existing(|o| {
        let parked = &mut o.borrow_mut().parked;
        while parked.last().is_some_and(|&(level, _)| level > depth) {
            parked.pop();
        }
        parked.last().map_or(0, |&(level, _)| level)
    });
    h.parked_top.set(top.unwrap_or(0));
}

/// Installs `id`'s entry in the cache (a miss). Err(EBADF) if `id` is not
/// live; Ok(false) if the thread can have no cache (no POSIX key or memory
/// left).
#[cold]
#[inline(never)]
fn fill(h: &Hot, id: u64, generation: u64) -> Result<bool> {
    let e = lookup(id)?;
    let (vm, vcpu) = match &e {
        Entry::Ctx(vm, _) => (Arc::as_ptr(vm), NOT_VCPU),
        Entry::Vcpu(vm, i) => (Arc::as_ptr(vm), *i),
    };
    let fresh = || RefCell::new(Owned { entry: None, parked: Vec::new() });
    let installed = OWNED.with_or_init(fresh, |o| {
        let mut o = o.borrow_mut();
        if let Some(old) = o.entry.replace(e) {
            // Parked only if a call still running uses it: at most one
            // entry per running call, however many handles a long VM_RUN's
            // callbacks go through (dropping `old` here drops nobody's VM).
            if h.used_from.get() <= h.depth.get() {
                o.parked.push((h.used_from.get(), old));
                h.parked_top.set(h.used_from.get());
            }
        }
    });
    if installed.is_none() {
        return Ok(false);
    }
    h.id.set(id);
    h.generation.set(generation);
    h.vm.set(vm);
    h.vcpu.set(vcpu);
    h.used_from.set(NOT_USED);
    Ok(true)
}

/// This thread's cache (plain cells, see [`Hot`]).
#[inline(always)]
fn hot() -> &'static Hot {
    // A small closure, so that reaching the cells inlines to one
    // thread-pointer offset; `HOT` has no destructor, so it lives as long
    // as this thread, and the reference never leaves it.
    HOT.with(|h| {
        // SAFETY: see above.
        unsafe { &*(h as *const Hot) }
    })
}

/// Runs `f` on the entry behind handle `id`, through the thread's cache.
/// A hit is a few loads and compares, inlined into the caller; a miss
/// takes the cold path.
#[inline(always)]
fn with_entry<R>(id: u64, f: impl FnOnce(&Vm, Option<usize>) -> R) -> Result<R> {
    let h = hot();
    if h.holds(id) {
        Ok(with_cached(h, f))
    } else {
        with_entry_missed(h, id, f)
    }
}

/// Runs `f` on the VM the cache holds, counted as a use (so that a nested
/// call that replaces the entry parks it instead of dropping it).
#[inline(always)]
fn with_cached<R>(h: &Hot, f: impl FnOnce(&Vm, Option<usize>) -> R) -> R {
    // SAFETY: `vm` points into the `Arc` that `OWNED` holds for this
    // handle, or, once a nested call has replaced it, parks (this call
    // marks it used from its level or an outer one, `used_from`) until
    // the call at that level, this one or an enclosing one, returns; at
    // thread exit `OWNED` empties the cache before dropping the `Arc`. So
    // it outlives `f`.
    let vm = unsafe { &*h.vm.get() };
    let i = h.vcpu.get();
    let level = h.depth.get() + 1;
    h.depth.set(level);
    h.used_from.set(h.used_from.get().min(level));
    let _using = Using(h);
    f(vm, (i != NOT_VCPU).then_some(i))
}

/// A miss: fill the cache from the table (EBADF if `id` is not live) and
/// run `f`; when the thread can have no cache, this call holds the entry
/// itself.
#[cold]
#[inline(never)]
fn with_entry_missed<R>(h: &Hot, id: u64, f: impl FnOnce(&Vm, Option<usize>) -> R) -> Result<R> {
    let generation = GENERATION.load(Ordering::SeqCst);
    if fill(h, id, generation)? {
        return Ok(with_cached(h, f));
    }
    Ok(match lookup(id)? {
        Entry::Ctx(vm, _) => f(&vm, None),
        Entry::Vcpu(vm, i) => f(&vm, Some(i)),
    })
}

/// Runs `f` with the VM behind a ctx handle: EFAULT for NULL, EBADF for
/// anything that is not a live ctx handle.
#[inline(always)]
pub fn with_ctx<R>(ctx: *const vmctx, f: impl FnOnce(&Vm) -> R) -> Result<R> {
    if ctx.is_null() {
        return Err(Error::Fault);
    }
    with_entry(ctx as usize as u64, |vm, vcpu| vcpu.is_none().then(|| f(vm)))?.ok_or(Error::Destroyed)
}

/// Runs `f` with the VM behind `ctx` if that is the ctx handle this
/// thread's cache holds (the hot path of the pin commands: no NULL check,
/// as NULL is never cached); None, running nothing, otherwise: then
/// [`with_ctx`] fills the cache or fails.
#[inline(always)]
pub fn with_cached_ctx<R>(ctx: *const vmctx, f: impl FnOnce(&Vm) -> R) -> Option<R> {
    let h = hot();
    (h.holds(ctx as usize as u64) && h.vcpu.get() == NOT_VCPU).then(|| with_cached(h, |vm, _| f(vm)))
}

/// Runs `f` with the VM and vCPU id behind a vcpu handle.
#[inline(always)]
pub fn with_vcpu<R>(vcpu: *const vcpu, f: impl FnOnce(&Vm, usize) -> R) -> Result<R> {
    if vcpu.is_null() {
        return Err(Error::Fault);
    }
    with_entry(vcpu as usize as u64, |vm, id| id.map(|id| f(vm, id)))?.ok_or(Error::Destroyed)
}

#[cfg(all(test, not(loom)))]
mod tests;
