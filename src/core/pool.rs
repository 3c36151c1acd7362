//! The library's own rayon pool, one per process.
//!
//! rayon's threads do not survive `fork()`: a child inherits the pool's data
//! but none of its threads, and the first `install` would hang. So the pool
//! is tagged with the pid that built it, and a process that finds another
//! pid's pool builds its own. Replaced slots are never freed: in a child
//! their threads do not exist, and in the parent another thread may still
//! be inside one. Instead they are kept for reuse, so switching between
//! thread counts builds each size once per process rather than leaking a
//! pool per switch. Reading the current pool is one atomic load and a
//! `getpid`, no lock; only building or switching takes the lock (a fork
//! during a switch in another thread would inherit it held: switch sizes at
//! configuration time, not while forking).
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

struct Slot {
    pid: u32,
    threads: usize,
    pool: rayon::ThreadPool,
}

static SLOT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
static WANTED_THREADS: AtomicUsize = AtomicUsize::new(0);
/// Every slot ever published, for reuse by a later switch back to its size.
static BUILT: Mutex<Vec<usize>> = Mutex::new(Vec::new());

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
        let fresh = reuse_or_build(pid, threads)?;
        // Losing this race is fine: the winner's slot is as good as ours,
        // and ours stays in `BUILT` for later.
        let _ = SLOT.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A published slot of this pid and size, or a new one (then recorded).
fn reuse_or_build(pid: u32, threads: usize) -> Option<*mut Slot> {
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for &addr in built.iter() {
        // SAFETY: addresses in BUILT come from Box::into_raw below and are
        // never freed.
        let slot = unsafe { &*(addr as *const Slot) };
        if slot.pid == pid && slot.threads == threads {
            return Some(addr as *mut Slot);
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
    built.push(fresh as usize);
    Some(fresh)
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
