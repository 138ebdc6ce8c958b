use super::*;

fn vm(name: &str) -> Arc<Vm> {
    Arc::new(Vm::with_idle_backend(name, 2).unwrap())
}

/// A "handle" equal to the cache's EMPTY sentinel ((void *)-1,
/// MAP_FAILED) is not a handle: EBADF, never a hit on the empty cache
/// (whose VM pointer is null on a fresh thread, stale after exit).
#[test]
fn the_empty_sentinel_is_not_a_handle() {
    std::thread::spawn(|| {
        // The invariant itself, which the calls below test only while
        // no handle has been closed in the process (GENERATION 0).
        assert_eq!(hot().generation.get(), NO_GENERATION, "an empty cache matches no generation");
        let bogus = EMPTY as usize;
        assert_eq!(with_ctx(bogus as *const vmctx, |vm| vm.maxcpus()), Err(Error::Destroyed));
        assert_eq!(with_cached_ctx(bogus as *const vmctx, |vm| vm.maxcpus()), None);
        assert_eq!(with_vcpu(bogus as *const vcpu, |_, id| id), Err(Error::Destroyed));
    })
    .join()
    .unwrap();
}

#[test]
fn a_closed_handle_fails_even_when_cached() {
    let ctx = new_ctx(vm("cache-a"));
    assert_eq!(with_ctx(ctx, |vm| vm.maxcpus()), Ok(2));
    assert_eq!(with_ctx(ctx, |vm| vm.maxcpus()), Ok(2), "cached");
    close_ctx(ctx).unwrap();
    assert_eq!(with_ctx(ctx, |_| ()), Err(Error::Destroyed));
    assert_eq!(with_ctx(std::ptr::null(), |_| ()), Err(Error::Fault));
}

#[test]
fn only_a_live_cached_ctx_handle_takes_the_hot_path() {
    // A fresh thread: its cache is empty, and NULL must not hit it.
    std::thread::spawn(|| {
        let ctx = new_ctx(vm("cache-d"));
        let vcpu = new_vcpu(vm("cache-e"), 1);
        assert_eq!(with_cached_ctx(std::ptr::null(), |_| ()), None, "empty cache, NULL");
        assert_eq!(with_cached_ctx(ctx, |_| ()), None, "not cached yet");
        // Another test's handle close (any thread) empties the cache
        // between the two calls now and then: fill it again.
        let hit = (0..1000).find_map(|_| {
            assert_eq!(with_ctx(ctx, |vm| vm.maxcpus()), Ok(2));
            with_cached_ctx(ctx, |vm| vm.maxcpus())
        });
        assert_eq!(hit, Some(2), "a filled cache hits");
        assert_eq!(with_cached_ctx(std::ptr::null(), |_| ()), None, "NULL");
        assert_eq!(with_vcpu(vcpu, |_, id| id), Ok(1));
        assert_eq!(with_cached_ctx(vcpu as *const vmctx, |_| ()), None, "a vcpu handle");
        assert_eq!(with_ctx(ctx, |_| ()), Ok(()));
        close_ctx(ctx).unwrap();
        assert_eq!(with_cached_ctx(ctx, |_| ()), None, "closed");
        close_vcpu(vcpu).unwrap();
    })
    .join()
    .unwrap();
}

/// Entries parked by this thread's nested calls.
fn parked_len() -> usize {
    OWNED.with_existing(|o| o.borrow().parked.len()).unwrap_or(0)
}

/// A long outer call (VM_RUN) whose callbacks go through other
/// handles again and again, while handles are closed elsewhere, parks
/// only the entries of calls still running: one here, not one per
/// callback (which grew without bound until the outer call returned).
#[test]
fn nested_calls_park_only_entries_in_use() {
    std::thread::spawn(|| {
        let (a, b) = (vm("cache-f"), vm("cache-g"));
        let ctx_a = new_ctx(a.clone());
        let vcpu_a = new_vcpu(a, 0);
        let ctx_b = new_ctx(b);
        let r = with_vcpu(vcpu_a, |outer, _| {
            for _ in 0..1000 {
                assert_eq!(with_ctx(ctx_a, |vm| vm.maxcpus()), Ok(2));
                assert_eq!(with_ctx(ctx_b, |vm| vm.maxcpus()), Ok(2));
                // A deeper nesting parks the entry its caller uses,
                // until that caller returns.
                let inner = with_ctx(ctx_a, |_| {
                    assert_eq!(with_ctx(ctx_b, |_| parked_len()), Ok(2));
                });
                assert_eq!((inner, parked_len()), (Ok(()), 1));
                close_ctx(new_ctx(vm("cache-h"))).unwrap();
            }
            assert_eq!(parked_len(), 1, "the outer call's entry only");
            outer.maxcpus()
        });
        assert_eq!(r, Ok(2));
        assert_eq!(parked_len(), 0, "dropped when the outer call returned");
        for h in [ctx_a, ctx_b] {
            close_ctx(h).unwrap();
        }
        close_vcpu(vcpu_a).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn kinds_do_not_mix_and_nested_calls_keep_the_outer_vm() {
    let (a, b) = (vm("cache-b"), vm("cache-c"));
    let ctx_a = new_ctx(a.clone());
    let vcpu_b = new_vcpu(b, 1);
    assert_eq!(with_ctx(vcpu_b as *const vmctx, |_| ()), Err(Error::Destroyed));
    assert_eq!(with_vcpu(ctx_a as *const vcpu, |_, _| ()), Err(Error::Destroyed));
    // Closing a handle as the other kind closes nothing.
    assert_eq!(close_ctx(vcpu_b as *const vmctx), Err(Error::Destroyed));
    assert_eq!(close_vcpu(ctx_a as *const vcpu), Err(Error::Destroyed));
    assert_eq!(close_ctx(std::ptr::null()), Err(Error::Fault));
    assert_eq!(with_vcpu(vcpu_b, |_, id| id), Ok(1));
    drop(a);
    let r = with_ctx(ctx_a, |outer| {
        // A nested call (a C callback) with another handle replaces the
        // cache entry, and the outer handle is closed meanwhile: the
        // outer VM stays usable until the outer call returns.
        assert_eq!(with_vcpu(vcpu_b, |_, id| id), Ok(1));
        close_ctx(ctx_a).unwrap();
        outer.maxcpus()
    });
    assert_eq!(r, Ok(2));
    assert_eq!(with_ctx(ctx_a, |_| ()), Err(Error::Destroyed));
    close_vcpu(vcpu_b).unwrap();
}

/// Random nesting (calls through random handles inside calls, up to
/// depth 6, as C callbacks can), with handles closed on this thread
/// and others (generation bumps), VMs created, and panics caught
/// mid-nesting: every running call's VM stays alive until the call
/// returns, and nothing stays parked at depth 0.
#[test]
fn random_nesting_keeps_every_running_calls_vm() {
    use std::cell::RefCell;
    use std::sync::Weak;
    struct St {
        rng: u64,
        handles: Vec<(usize, bool, Weak<Vm>)>,
        n: u64,
    }
    impl St {
        fn r(&mut self, m: u64) -> u64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            self.rng % m
        }
        fn add(&mut self) {
            self.n += 1;
            let v = vm(&format!("rnd-{}", self.n));
            let w = Arc::downgrade(&v);
            let k = self.r(3);
            if k != 1 {
                self.handles.push((new_ctx(v.clone()) as usize, false, w.clone()));
            }
            if k != 0 {
                self.handles.push((new_vcpu(v.clone(), 1) as usize, true, w));
            }
        }
    }
    fn level(st: &RefCell<St>, depth: u32) {
        for _ in 0..4 {
            let a = st.borrow_mut().r(8);
            match a {
                0..=4 => {
                    let pick = {
                        let mut s = st.borrow_mut();
                        if s.handles.is_empty() {
                            continue;
                        }
                        let len = s.handles.len() as u64;
                        let i = s.r(len) as usize;
                        s.handles[i].clone()
                    };
                    let (h, is_vcpu, w) = pick;
                    let body = |vm: &Vm| {
                        assert!(std::ptr::eq(vm, w.as_ptr()));
                        if depth < 5 {
                            level(st, depth + 1);
                        }
                        assert!(w.strong_count() > 0, "a VM in use was dropped at depth {depth}");
                        assert_eq!(vm.maxcpus(), 2);
                    };
                    if is_vcpu {
                        let _ = with_vcpu(h as *const vcpu, |vm, _| body(vm));
                    } else if a == 4 {
                        let _ = with_cached_ctx(h as *const vmctx, |vm| body(vm));
                    } else if a == 3 {
                        // A panic caught at the FFI boundary.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let _ = with_ctx(h as *const vmctx, |vm| {
                                body(vm);
                                std::panic::resume_unwind(Box::new("nested panic"));
                            });
                        }));
                        let _ = r;
                    } else {
                        let _ = with_ctx(h as *const vmctx, body);
                    }
                }
                5 => {
                    let mut s = st.borrow_mut();
                    if !s.handles.is_empty() {
                        let len = s.handles.len() as u64;
                        let i = s.r(len) as usize;
                        let (h, is_vcpu, _) = s.handles.swap_remove(i);
                        if is_vcpu {
                            close_vcpu(h as *const vcpu).unwrap();
                        } else {
                            close_ctx(h as *const vmctx).unwrap();
                        }
                    }
                }
                6 => st.borrow_mut().add(),
                _ => {
                    // A close on another thread: only the generation.
                    std::thread::spawn(|| close_ctx(new_ctx(vm("rnd-other"))).unwrap()).join().unwrap();
                }
            }
        }
    }
    for seed in 1..5u64 {
        std::thread::spawn(move || {
            let st = RefCell::new(St { rng: seed.wrapping_mul(0x9E3779B97F4A7C15) | 1, handles: Vec::new(), n: 0 });
            for _ in 0..4 {
                st.borrow_mut().add();
            }
            for _ in 0..20 {
                level(&st, 0);
            }
            assert_eq!(parked_len(), 0);
            for (h, is_vcpu, _) in st.into_inner().handles {
                if is_vcpu {
                    close_vcpu(h as *const vcpu).unwrap();
                } else {
                    close_ctx(h as *const vmctx).unwrap();
                }
            }
        })
        .join()
        .unwrap();
    }
}

/// Handles are multiples of 16, so they never collide with the small
/// integers or odd sentinel values C code may compare a handle against,
/// and the cache's EMPTY sentinel is never one.
#[test]
fn handles_are_multiples_of_16() {
    let v = vm("handle-align");
    let handles: Vec<usize> = (0..32).map(|i| if i % 2 == 0 { new_ctx(v.clone()) as usize } else { new_vcpu(v.clone(), 1) as usize }).collect();
    for &h in &handles {
        assert_eq!(h % 16, 0, "handle {h:#x}");
        assert_ne!(h, 0);
    }
    for (i, h) in handles.into_iter().enumerate() {
        if i % 2 == 0 {
            close_ctx(h as *const vmctx).unwrap();
        } else {
            close_vcpu(h as *const vcpu).unwrap();
        }
    }
}

/// Dropping a thread's cache owner (as its thread-exit destructor does)
/// leaves the cache matching no handle, (void *)-1 (the EMPTY id)
/// included, whatever handles are closed meanwhile: its VM pointer
/// dangles from then on, and a call made later in the thread's exit
/// must miss.
#[test]
fn a_dropped_cache_owner_leaves_the_cache_matching_nothing() {
    std::thread::spawn(|| {
        let ctx = new_ctx(vm("cache-exit"));
        assert_eq!(with_ctx(ctx, |vm| vm.maxcpus()), Ok(2));
        drop(Owned { entry: None, parked: Vec::new() });
        let h = hot();
        assert_eq!(h.generation.get(), NO_GENERATION, "an empty cache matches no generation");
        assert!(!h.holds(EMPTY) && !h.holds(ctx as u64));
        close_ctx(ctx).unwrap();
    })
    .join()
    .unwrap();
}
