"""Seeded synthetic embedding-like datasets, written in the layout of
``../shared/datasets/*`` (base.npy, queries.npy, gt.npy, gt_scores.npy, meta.json).

    uv run python -m benchmarks.harness.synthetic --n 100000 --dim 768 \\
        --out benchmarks/.cache/syn-100k-768

Vectors are unit-norm mixtures of anisotropic Gaussian clusters living near a
low-dimensional subspace plus isotropic noise, with a common offset (real
sentence embeddings are neither centred nor isotropic). Queries come from the
same distribution and are held out. Ground truth is exact inner product,
computed blockwise in float32 with numpy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def generate(
    n: int, dim: int, queries: int = 1000, seed: int = 0, clusters: int = 256, spread: float = 0.35
):
    rng = np.random.default_rng(seed)
    latent = min(64, dim)
    basis = np.linalg.qr(rng.standard_normal((dim, latent)))[0].T.astype(np.float32)
    offset = rng.standard_normal(dim).astype(np.float32) * 0.5 / np.sqrt(dim) * 4
    # `spread` is the between-cluster scale against within-cluster noise of ~1:
    # small values give overlapping clusters, hard for partition routing.
    centers = spread * rng.standard_normal((clusters, latent)).astype(np.float32)
    scales = rng.uniform(0.3, 1.0, (clusters, latent)).astype(np.float32)
    total = n + queries
    which = rng.integers(0, clusters, total)
    z = centers[which] + rng.standard_normal((total, latent)).astype(np.float32) * scales[which]
    x = z @ basis + 0.15 * rng.standard_normal((total, dim)).astype(np.float32) + offset
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n].astype(np.float32), x[n:].astype(np.float32)


def ground_truth(base: np.ndarray, queries: np.ndarray, k: int = 100, block: int = 65536):
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(base), block):
        s = queries @ base[start : start + block].T
        i = np.arange(start, start + s.shape[1])[None, :].repeat(len(queries), 0)
        s = np.concatenate([best_s, s], 1)
        i = np.concatenate([best_i, i], 1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(s, top, 1)
        best_i = np.take_along_axis(i, top, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1).astype(np.int32), np.take_along_axis(
        best_s, order, 1
    )


def write(out: Path, n: int, dim: int, queries: int, seed: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    base, q = generate(n, dim, queries, seed)
    gt, gs = ground_truth(base, q)
    np.save(out / "base.npy", base)
    np.save(out / "queries.npy", q)
    np.save(out / "gt.npy", gt)
    np.save(out / "gt_scores.npy", gs)
    meta = {"name": out.name, "n": n, "dim": dim, "queries": queries, "seed": seed, "metric": "ip"}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="write a synthetic dataset directory")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    print(write(Path(a.out), a.n, a.dim, a.queries, a.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
