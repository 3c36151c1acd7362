"""Seeded synthetic embedding-like datasets, written in the layout of
``../shared/datasets/*`` (base.npy, queries.npy, gt.npy, gt_scores.npy, meta.json).

    uv run python -m benchmarks.harness.synthetic --n 100000 --dim 768 \\
        --out benchmarks/.cache/syn-100k-768
    uv run python -m benchmarks.harness.synthetic --kind clustered --n 1000000 \\
        --out benchmarks/.cache/synthetic-clustered-1000000-384-s0
    uv run python -m benchmarks.harness.synthetic --kind ada --n 100000 \\
        --out benchmarks/.cache/synthetic-ada-100000-1536-s0

Four kinds (``--kind``), each unit-norm, queries held out from the same
distribution, ground truth exact inner product computed blockwise in float32
with numpy:

- ``default``: unit-norm mixtures of 256 overlapping anisotropic Gaussian
  clusters living near a 64-d subspace plus isotropic noise, with a common
  offset (real sentence embeddings are neither centred nor isotropic). Hard
  for partition routing. Recorded results depend on it: its output (every
  file, meta.json included) must stay the same bit for bit.
- ``clustered``: many well-separated clusters with a small spread (random
  unit centres, uneven sizes, each row its centre plus a small anisotropic
  low-rank part and isotropic noise): the well-clustered regime that
  partition methods are built for, meant for 1M x 384 runs.
- ``gaussian``: isotropic Gaussian rows, unit norm: no structure at all, the
  worst case for partitions (the kind of data the README quickstart uses,
  there 10k x 64).
- ``ada``: a stand-in for OpenAI ada-002 embeddings (1536-d by default, meant
  for 9k-100k rows): a strong common direction (mean pairwise cosine about
  0.75, the "narrow cone" of ada-002), plus a low-rank part with a decaying
  spectrum that carries cluster structure and anisotropy, plus isotropic
  noise. The mean pairwise cosine is measured on a sample, printed and kept
  in meta.json with the seed and parameters.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np

KINDS = ("default", "clustered", "ada", "gaussian")
DEFAULT_DIM = {"default": 384, "clustered": 384, "ada": 1536, "gaussian": 384}
# Parameters of the new kinds (the default kind takes none: see generate()).
CLUSTERED = {"clusters": 2048, "spread": 0.5, "latent": 32, "size_sigma": 0.5}
ADA = {
    "mean_cos": 0.75,
    "clusters": 100,
    "rank": 128,
    "decay": 1.0,
    "center_share": 0.35,
    "noise_share": 0.2,
}


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


def generate_gaussian(n: int, dim: int, queries: int = 1000, seed: int = 0):
    """Isotropic Gaussian rows and queries, scaled to unit norm: no structure
    at all (every point nearly equidistant from every other), the worst case
    for partitions, and the kind of data the README quickstart uses."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + queries, dim), dtype=np.float32)
    x = _unit_rows(x)
    return x[:n], x[n:]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def generate_clustered(
    n: int,
    dim: int = 384,
    queries: int = 1000,
    seed: int = 0,
    clusters: int = 2048,
    spread: float = 0.5,
    latent: int = 32,
    size_sigma: float = 0.5,
):
    """Well-separated clusters: ``clusters`` random unit centres (nearly
    orthogonal in high dimension), cluster sizes log-normal (``size_sigma``),
    each row its centre plus a within-cluster part of norm about ``spread``
    (half of its variance in a ``latent``-d subspace shared by all clusters,
    with a decaying spectrum; half isotropic). ``spread`` 0.5 puts rows at
    cosine about 0.9 from their centre and 0.8 from each other, against
    about 0 across clusters."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    centers = _unit_rows(rng.standard_normal((clusters, dim), dtype=f32))
    weights = rng.lognormal(0.0, size_sigma, clusters)
    total = n + queries
    which = rng.choice(clusters, total, p=weights / weights.sum())
    latent = min(latent, dim)
    basis = np.linalg.qr(rng.standard_normal((dim, latent)))[0].T.astype(f32)
    spectrum = 1.0 / np.sqrt(np.arange(1, latent + 1))
    spectrum = (spectrum / np.linalg.norm(spectrum)).astype(f32)  # total variance 1
    x = centers[which]
    half = f32(spread / np.sqrt(2.0))
    x += (rng.standard_normal((total, latent), dtype=f32) * (half * spectrum)) @ basis
    x += rng.standard_normal((total, dim), dtype=f32) * f32(half / np.sqrt(dim))
    _unit_rows(x)
    return x[:n], x[n:]


def generate_ada(
    n: int,
    dim: int = 1536,
    queries: int = 1000,
    seed: int = 0,
    mean_cos: float = 0.75,
    clusters: int = 100,
    rank: int = 128,
    decay: float = 1.0,
    center_share: float = 0.35,
    noise_share: float = 0.2,
):
    """An ada-002-like set: unit rows ``mu + v`` (then normalized), ``mu`` a
    common unit direction, ``v`` orthogonal to it with ``E|v|^2 = s^2 =
    1 / mean_cos - 1``, so that the mean pairwise cosine is about
    ``mean_cos``. ``v`` has three parts: cluster centres (``center_share``
    of its variance) and within-cluster spread in a ``rank``-d subspace
    whose variances decay as ``i ** -decay`` (anisotropy), and isotropic
    noise (``noise_share``)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    q = np.linalg.qr(rng.standard_normal((dim, rank + 1)))[0].T.astype(f32)
    mu, basis = q[0], q[1:]  # orthonormal: the common direction and the low-rank basis
    var = np.arange(1, rank + 1, dtype=np.float64) ** -decay
    sd = np.sqrt(var / var.sum()).astype(f32)  # latent std devs, total variance 1
    s2 = 1.0 / mean_cos - 1.0
    center_sd = f32(np.sqrt(s2 * center_share))
    within_sd = f32(np.sqrt(s2 * (1.0 - center_share - noise_share)))
    centers = rng.standard_normal((clusters, rank), dtype=f32) * (sd * center_sd)
    weights = rng.lognormal(0.0, 0.5, clusters)
    total = n + queries
    which = rng.choice(clusters, total, p=weights / weights.sum())
    z = centers[which] + rng.standard_normal((total, rank), dtype=f32) * (sd * within_sd)
    x = z @ basis
    x += rng.standard_normal((total, dim), dtype=f32) * f32(np.sqrt(s2 * noise_share / dim))
    x += mu
    _unit_rows(x)
    return x[:n], x[n:]


def mean_pairwise_cosine(x: np.ndarray, sample: int = 2000, seed: int = 12345) -> float:
    """Mean cosine over distinct pairs of a random sample of unit rows."""
    rng = np.random.default_rng(seed)
    s = x[np.sort(rng.choice(len(x), min(sample, len(x)), replace=False))].astype(np.float64)
    g = s @ s.T
    m = len(s)
    return float((g.sum() - np.trace(g)) / (m * (m - 1)))


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


def params_of(kind: str, **overrides) -> dict:
    """The full parameter set of ``kind`` with ``overrides`` (None: default)."""
    if kind in ("default", "gaussian"):
        if any(v is not None for v in overrides.values()):
            raise ValueError(f"the {kind} kind takes no parameters")
        return {}
    table = CLUSTERED if kind == "clustered" else ADA
    unknown = sorted(k for k, v in overrides.items() if v is not None and k not in table)
    if unknown:
        raise ValueError(f"kind {kind!r} has no parameter(s) {unknown}; it has {sorted(table)}")
    return {**table, **{k: v for k, v in overrides.items() if v is not None}}


def write(
    out: Path,
    n: int,
    dim: int,
    queries: int,
    seed: int,
    kind: str = "default",
    params: Optional[dict] = None,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    meta = {"name": out.name, "n": n, "dim": dim, "queries": queries, "seed": seed, "metric": "ip"}
    if kind == "default":
        if params:
            raise ValueError("the default kind takes no parameters (its output is frozen)")
        base, q = generate(n, dim, queries, seed)
    elif kind == "gaussian":
        if params:
            raise ValueError("the gaussian kind takes no parameters")
        base, q = generate_gaussian(n, dim, queries, seed)
        meta.update(kind=kind, generator="benchmarks.harness.synthetic.generate_gaussian")
    else:
        params = params_of(kind, **(params or {}))
        make = generate_clustered if kind == "clustered" else generate_ada
        base, q = make(n, dim, queries, seed, **params)
        cos = mean_pairwise_cosine(base)
        meta.update(
            kind=kind,
            params=params,
            mean_pairwise_cosine=round(cos, 4),
            mean_pairwise_cosine_sample=min(2000, n),
            generator=f"benchmarks.harness.synthetic.generate_{kind}",
            numpy=np.__version__,
        )
        print(f"{kind}: {n} x {dim} (+{queries} queries), seed {seed}, {json.dumps(params)}")
        print(f"mean pairwise cosine (sample of {min(2000, n)} rows): {cos:.4f}")
    gt, gs = ground_truth(base, q)
    np.save(out / "base.npy", base)
    np.save(out / "queries.npy", q)
    np.save(out / "gt.npy", gt)
    np.save(out / "gt_scores.npy", gs)
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="write a synthetic dataset directory")
    ap.add_argument("--kind", choices=KINDS, default="default")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=None, help="default: 384 (ada: 1536)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clusters", type=int, default=None, help="clustered, ada: cluster count")
    ap.add_argument("--spread", type=float, default=None, help="clustered: within-cluster norm")
    ap.add_argument("--mean-cos", type=float, default=None, help="ada: target mean cosine")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    dim = a.dim or DEFAULT_DIM[a.kind]
    try:
        params = params_of(a.kind, clusters=a.clusters, spread=a.spread, mean_cos=a.mean_cos)
    except ValueError as e:
        ap.error(str(e))
    print(write(Path(a.out), a.n, dim, a.queries, a.seed, a.kind, params or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
