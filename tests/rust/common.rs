//! Seeded test data and helpers shared by the test modules.
use std::path::PathBuf;

/// A small xorshift generator: deterministic data without a rand crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `n x dim` clustered vectors with a common offset, like real embeddings.
pub fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let offset: Vec<f32> = (0..dim).map(|_| 0.3 * rng.unit()).collect();
    let centers: Vec<Vec<f32>> = (0..16)
        .map(|_| (0..dim).map(|_| rng.unit()).collect())
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = &centers[i % centers.len()];
        for d in 0..dim {
            out.push(offset[d] + c[d] + 0.6 * rng.unit());
        }
    }
    out
}

/// A fresh temporary directory, removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("svve-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Held by tests that change the library's pool size, so that they do not
/// race each other (the size is process-wide).
pub static POOL_SIZE: std::sync::Mutex<()> = std::sync::Mutex::new(());
