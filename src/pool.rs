//! The library's own rayon pool, one per process: process plumbing shared
//! by the builder and the query pipeline.
//!
//! rayon's threads do not survive `fork()`: a child inherits the pool's data
//! but none of its threads, and the first `install` would hang. So the pool
//! is tagged with the pid that built it, and a process that finds another
//! pid's pool builds its own. Pools are leaked on purpose (`&'static`): in a
//! child their threads do not exist, and in the parent another thread may
//! still be inside one. Every pool built is kept for reuse, so switching
//! between thread counts builds each size once per process rather than
//! leaking a pool per switch. Reading the current pool is one atomic load
//! and a `getpid`, no lock; only building or switching takes the lock (a
//! fork during a switch in another thread would inherit it held: switch
//! sizes at configuration time, not while forking).
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// One pool and what it was built for.
struct Slot {
    pid: u32,
    threads: usize,
    pool: rayon::ThreadPool,
}

/// The pool in use: null, or a `&'static Slot` from [`BUILT`].
static CURRENT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
static WANTED_THREADS: AtomicUsize = AtomicUsize::new(0);
/// Every slot ever built (leaked), for reuse by a later switch back to its size.
static BUILT: Mutex<Vec<&'static Slot>> = Mutex::new(Vec::new());

/// Threads the next pool will get: the last `set_threads` value, else
/// `SVVE_NUM_THREADS`, else the number of CPUs this process may use (both
/// read once per process: queries ask, and reading the environment takes
/// a lock).
pub fn configured_threads() -> usize {
    static DEFAULT: OnceLock<usize> = OnceLock::new();
    match WANTED_THREADS.load(Ordering::Relaxed) {
        0 => *DEFAULT.get_or_init(|| {
            std::env::var("SVVE_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        }),
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
    let cur = CURRENT.load(Ordering::Acquire);
    // SAFETY: CURRENT is only ever set to pointers made from `&'static Slot`
    // (leaked boxes, never freed), so a non-null value is valid forever.
    if let Some(slot) = unsafe { cur.as_ref() } {
        if slot.pid == pid && slot.threads == threads {
            return Some(&slot.pool);
        }
    }
    let slot = reuse_or_build(pid, threads)?;
    CURRENT.store(std::ptr::from_ref(slot).cast_mut(), Ordering::Release);
    Some(&slot.pool)
}

/// A built slot of this pid and size, or a new one (then recorded).
fn reuse_or_build(pid: u32, threads: usize) -> Option<&'static Slot> {
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(slot) = built.iter().find(|s| s.pid == pid && s.threads == threads) {
        return Some(slot);
    }
    let pool = [threads, 1].into_iter().find_map(|t| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .thread_name(|i| format!("svve-{i}"))
            .build()
            .ok()
    })?;
    let slot: &'static Slot = Box::leak(Box::new(Slot { pid, threads, pool }));
    built.push(slot);
    Some(slot)
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
