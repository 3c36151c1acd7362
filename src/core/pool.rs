//! The library's own rayon pool, one per process.
//!
//! rayon's threads do not survive `fork()`: a child inherits the pool's data
//! but none of its threads, and the first `install` would hang. So the pool
//! is tagged with the pid that built it, and a process that finds another
//! pid's pool builds its own. The old slot is leaked on purpose: in a child
//! its threads do not exist, so dropping it is not safe to attempt. Reading
//! the current pool is one atomic load and a `getpid`, no lock.
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

struct Slot {
    pid: u32,
    threads: usize,
    pool: rayon::ThreadPool,
}

static SLOT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
static WANTED_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads the next pool will get: the last `set_threads` value, else
/// `SVVE_NUM_THREADS`, else the number of CPUs this process may use.
pub fn configured_threads() -> usize {
    match WANTED_THREADS.load(Ordering::Relaxed) {
        0 => std::env::var("SVVE_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    }
}

/// Sets the pool size; a running pool of another size is replaced lazily.
pub fn set_threads(n: usize) {
    WANTED_THREADS.store(n, Ordering::Relaxed);
}

/// The pool of this process, built on first use (and again after a fork).
/// `None` only if the OS refuses to start even one thread.
pub fn get() -> Option<&'static rayon::ThreadPool> {
    let pid = std::process::id();
    let threads = configured_threads();
    loop {
        let cur = SLOT.load(Ordering::Acquire);
        // SAFETY: slots are only ever created by `Box::into_raw` below and,
        // once published, never freed, so a non-null pointer stays valid.
        if let Some(slot) = unsafe { cur.as_ref() } {
            if slot.pid == pid && slot.threads == threads {
                return Some(&slot.pool);
            }
        }
        let pool = [threads, 1].into_iter().find_map(|t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .thread_name(|i| format!("svve-{i}"))
                .build()
                .ok()
        })?;
        let fresh = Box::into_raw(Box::new(Slot { pid, threads, pool }));
        if SLOT
            .compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another thread installed a pool first: discard ours (its
            // threads are alive in this process, so dropping is fine).
            // SAFETY: `fresh` came from Box::into_raw above and was never shared.
            drop(unsafe { Box::from_raw(fresh) });
        }
    }
}

/// Runs `f` on this process's pool (inline if no pool could be started).
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match get() {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Threads of this process's pool (builds it if needed).
pub fn current_threads() -> usize {
    get().map_or(1, rayon::ThreadPool::current_num_threads)
}
