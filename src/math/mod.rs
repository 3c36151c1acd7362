//! Bit and float kernels. Every fast kernel has a portable twin, and
//! [`Kernels::detect`] picks the fastest one this CPU supports at run time,
//! so one wheel runs everywhere (no `target-cpu=native`).
pub mod bits;
pub mod estimate;
pub mod float;
pub mod gemm;
pub mod int8;
pub mod prefetch;
pub mod quantize;

/// Function pointers to the kernels chosen for this CPU.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Inner product of two equal-length slices.
    pub dot: fn(&[f32], &[f32]) -> f32,
    /// Int8 dot products of a query with a block of centroids, see [`int8`].
    pub dot_i8_block: int8::DotBlockFn,
    /// The same over int8 quads (AVX-512 VNNI), when the CPU has it: the
    /// router then keeps its centroids in that layout.
    pub dot_i8_quads: Option<int8::DotQuadsFn>,
    /// `out[i] = <x, rows[i]>` for the rows of a row-major matrix.
    pub dot_rows: fn(&[f32], &[f32], &mut [f32]),
    /// Squared Euclidean distance of two equal-length slices.
    pub l2sq: fn(&[f32], &[f32]) -> f32,
    /// Bit-plane popcount scan, see [`bits::plane_scan_portable`].
    pub plane_scan: bits::PlaneScanFn,
    /// Fused bit-plane scan and Tier1 estimate, see [`estimate::estimate_scan_portable`].
    pub estimate_scan: estimate::EstimateScanFn,
    /// Name of the instruction set in use, for `info()` and benchmarks.
    pub isa: &'static str,
}

impl Kernels {
    /// Portable kernels: compiled for the baseline target only.
    pub fn portable() -> Self {
        Self::PORTABLE
    }

    const PORTABLE: Kernels = Kernels {
        dot: float::dot_portable,
        dot_rows: float::dot_rows_portable,
        dot_i8_block: int8::dot_block_portable,
        dot_i8_quads: None,
        l2sq: float::l2sq_portable,
        plane_scan: bits::plane_scan_portable,
        estimate_scan: estimate::estimate_scan_portable,
        isa: "portable",
    };

    /// Every kernel set this CPU can run, portable first (for tests that
    /// check each against the reference).
    pub fn all_supported() -> Vec<Kernels> {
        let mut out = vec![Self::PORTABLE];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("popcnt") {
                out.push(Kernels {
                    plane_scan: bits::x86::plane_scan_popcnt,
                    estimate_scan: estimate::x86::estimate_scan_popcnt,
                    isa: "x86_64+popcnt",
                    ..Self::PORTABLE
                });
            }
            out.push(Self::detect());
        }
        #[cfg(target_arch = "aarch64")]
        out.push(Self::detect());
        out
    }

    /// The fastest kernels this CPU supports, detected at run time.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let mut k = Self::portable();
            let mut isa = vec!["x86_64"];
            if std::arch::is_x86_feature_detected!("popcnt") {
                k.plane_scan = bits::x86::plane_scan_popcnt;
                k.estimate_scan = estimate::x86::estimate_scan_popcnt;
                isa.push("popcnt");
            }
            let avx512 = std::arch::is_x86_feature_detected!("avx512f");
            if avx512 && std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
                k.plane_scan = bits::x86::plane_scan_avx512;
                isa.push("avx512vpopcntdq");
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    k.estimate_scan = estimate::x86::estimate_scan_avx512;
                }
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                k.dot = float::x86::dot_avx2;
                k.dot_rows = float::x86::dot_rows_avx2;
                k.dot_i8_block = int8::x86::dot_block_avx2;
                k.l2sq = float::x86::l2sq_avx2;
                isa.push("avx2");
            }
            if avx512 && std::arch::is_x86_feature_detected!("avx512bw") {
                k.dot_i8_block = int8::x86::dot_block_avx512;
                isa.push("avx512bw");
                if std::arch::is_x86_feature_detected!("avx512vnni") {
                    k.dot_i8_quads = Some(int8::x86::dot_quads_vnni);
                    isa.push("avx512vnni");
                }
            }
            k.isa = match isa.join("+").as_str() {
                "x86_64" => "x86_64",
                "x86_64+popcnt" => "x86_64+popcnt",
                "x86_64+popcnt+avx2" => "x86_64+popcnt+avx2",
                "x86_64+popcnt+avx512vpopcntdq+avx2" => "x86_64+popcnt+avx512vpopcntdq+avx2",
                "x86_64+popcnt+avx2+avx512bw" => "x86_64+popcnt+avx2+avx512bw",
                "x86_64+popcnt+avx512vpopcntdq+avx2+avx512bw" => {
                    "x86_64+popcnt+avx512vpopcntdq+avx2+avx512bw"
                }
                "x86_64+popcnt+avx2+avx512bw+avx512vnni" => {
                    "x86_64+popcnt+avx2+avx512bw+avx512vnni"
                }
                "x86_64+popcnt+avx512vpopcntdq+avx2+avx512bw+avx512vnni" => {
                    "x86_64+popcnt+avx512vpopcntdq+avx2+avx512bw+avx512vnni"
                }
                _ => "x86_64+mixed",
            };
            k
        }
        #[cfg(target_arch = "aarch64")]
        {
            // NEON is part of the aarch64 baseline: no detection needed.
            Kernels {
                dot: float::neon::dot_neon,
                dot_rows: float::neon::dot_rows_neon,
                dot_i8_block: int8::neon::dot_block_neon,
                l2sq: float::neon::l2sq_neon,
                plane_scan: bits::neon::plane_scan_neon,
                estimate_scan: estimate::neon::estimate_scan_neon,
                isa: "aarch64+neon",
                ..Self::PORTABLE
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Self::portable()
        }
    }
}
