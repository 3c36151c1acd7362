"""One small interface per library, so the harness treats them all alike.

An adapter is made with its build parameters, then either ``build(base, dir)``
(writes the index under ``dir``) or ``load(dir)``; ``set_query(**params)``
picks a search setting; ``search(q, k)`` answers one float32 query and
``search_batch(Q, k)`` many, both returning row numbers of the base set;
``set_threads(n)`` bounds the threads of everything that follows.

Every peer is configured for inner product (the benchmark sets are unit-norm
and their ground truth is by inner product). Rescoring variants keep a float32
copy of the base next to their index, counted in its size on disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, Type

import numpy as np

REGISTRY: Dict[str, Type[Adapter]] = {}


def register(cls):
    REGISTRY[cls.name] = cls
    return cls


def _topk_rescore(base: np.ndarray, q: np.ndarray, cand: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-k of ``q`` among rows ``cand`` (float32, like svve's Tier2)."""
    cand = cand[cand >= 0]
    scores = base[np.sort(cand)] @ q
    order = np.argsort(-scores, kind="stable")[:k]
    return np.sort(cand)[order]


def _pad(ids: np.ndarray, k: int) -> np.ndarray:
    out = np.full(k, -1, np.int64)
    out[: len(ids)] = ids[:k]
    return out


class Adapter:
    name = "base"
    library = "base"

    def __init__(self, dim: int, metric: str = "ip", **build) -> None:
        if metric != "ip":
            raise ValueError("the benchmark adapters use inner product")
        self.dim, self.metric, self.build_params = dim, metric, build
        self.query_params: dict = {}
        self.threads = os.cpu_count() or 1

    def label(self) -> str:
        b = ",".join(f"{k}={v}" for k, v in self.build_params.items())
        return f"{self.name}({b})" if b else self.name

    def build(self, base: np.ndarray, path: str) -> None:
        raise NotImplementedError

    def load(self, path: str) -> None:
        raise NotImplementedError

    def set_query(self, **params) -> None:
        self.query_params = params

    def set_threads(self, n: int) -> None:
        self.threads = n

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        return np.stack([self.search(q, k) for q in queries])

    def stats(self, queries: np.ndarray, k: int) -> dict:
        """Optional per-setting diagnostics (svve: rows each stage touched)."""
        return {}


# --------------------------------------------------------------------- svve


def open_svve(index: str):
    """(SearchEngine, pinned?) for ``index``, pinned in RAM where allowed.

    Pinned like the peers' indexes, which live in anonymous memory the kernel
    cannot evict (no swap here). Unpinned, proactive reclaim (DAMON on these
    machines) drops file pages idle for about a minute, and the next query
    that needs one reads it from disk.
    """
    import svve_core

    try:
        return svve_core.SearchEngine(index, svve_core.EngineConfig(lock_pages=True)), True
    except svve_core.exceptions.IndexIOError:
        return svve_core.SearchEngine(index), False


@register
class Svve(Adapter):
    """svve-core itself. Build params go to IndexConfig, query params to SearchParams."""

    name = "svve"
    library = "svve-core"

    def build(self, base, path):
        import svve_core

        svve_core.set_num_threads(self.threads)
        svve_core.build_index(
            os.path.join(path, "index.svve"),
            base,
            metric=self.metric,
            config=svve_core.IndexConfig(**self.build_params),
            progress=lambda done, total: None,
        )

    def load(self, path):
        self.engine, self.locked = open_svve(os.path.join(path, "index.svve"))
        self.partitions = self.engine.info().partitions
        self.set_query()

    def set_query(self, **params):
        import svve_core

        self.query_params = params
        params = dict(params)
        # Sweeps give probes as a fraction of the partitions (like ScaNN's
        # leaves), so one plan fits every n; `expand_x` caps expansion at a
        # multiple of those probes.
        frac = params.pop("probe_frac", None)
        if frac is not None:
            params["nprobe"] = max(1, round(frac * self.partitions))
        mult = params.pop("expand_x", None)
        if mult is not None:
            params["expand_probes"] = max(1, round(mult * params.get("nprobe", 1)))
        self.params = svve_core.SearchParams(**params)

    def set_threads(self, n):
        import svve_core

        self.threads = n
        svve_core.set_num_threads(n)

    def search(self, q, k):
        return self.engine.search(q, k, self.params)[0]

    def search_batch(self, queries, k):
        return self.engine.search_batch(queries, k, self.params)[0]

    # Keys of SearchEngine.search_stats averaged into each record: the expected
    # ones must be there; "rescued" (rows voting added) goes with the voting stage.
    STATS = ("probed", "scanned", "survivors", "rescored")
    OPTIONAL_STATS = ("rescued",)

    def stats(self, queries, k):
        rows = [self.engine.search_stats(q, k, self.params)[2] for q in queries[:200]]
        missing = sorted({key for r in rows for key in self.STATS if key not in r})
        if missing:
            raise KeyError(
                f"search_stats no longer returns {missing}; it returns {sorted(rows[0])}"
            )
        out = {}
        for key in self.STATS + self.OPTIONAL_STATS:
            vals = [r[key] for r in rows if key in r]
            if vals:
                out[key] = float(np.mean(vals))
        out["partitions"] = self.partitions
        return out


# -------------------------------------------------------------------- faiss


class _Faiss(Adapter):
    library = "faiss-cpu"

    def set_threads(self, n):
        import faiss

        self.threads = n
        faiss.omp_set_num_threads(n)

    def _save(self, path):
        import faiss

        faiss.write_index(self.index, os.path.join(path, "index.faiss"))

    def load(self, path):
        import faiss

        self.index = faiss.read_index(os.path.join(path, "index.faiss"))
        self.set_query()

    def search(self, q, k):
        return self.index.search(q.reshape(1, -1), k)[1][0]

    def search_batch(self, queries, k):
        return self.index.search(queries, k)[1]


@register
class FaissFlat(_Faiss):
    """IndexFlatIP: exact brute force; the harness check (recall must be 1.0)."""

    name = "faiss-flat"

    def build(self, base, path):
        import faiss

        self.set_threads(self.threads)
        self.index = faiss.IndexFlatIP(self.dim)
        self.index.add(base)
        self._save(path)


@register
class FaissHNSW(_Faiss):
    name = "faiss-hnsw"

    def build(self, base, path):
        import faiss

        self.set_threads(self.threads)
        self.index = faiss.IndexHNSWFlat(self.dim, self.build_params.get("M", 32), 0)
        self.index.hnsw.efConstruction = self.build_params.get("efc", 200)
        self.index.add(base)
        self._save(path)

    def set_query(self, **params):
        self.query_params = params
        if params:
            self.index.hnsw.efSearch = params["ef"]


def _nlist(n: int, build: dict) -> int:
    return int(build.get("nlist") or max(1, round(4 * np.sqrt(n))))


@register
class FaissIVFFlat(_Faiss):
    name = "faiss-ivfflat"

    def build(self, base, path):
        import faiss

        self.set_threads(self.threads)
        nlist = _nlist(len(base), self.build_params)
        quantizer = faiss.IndexFlatIP(self.dim)
        self.index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.train(base[_sample(len(base), 64 * nlist)])
        self.index.add(base)
        self._save(path)

    def set_query(self, **params):
        self.query_params = params
        if params:
            self.index.nprobe = params["nprobe"]


@register
class FaissIVFRaBitQ(_Faiss):
    """IndexIVFRaBitQ (1-bit RaBitQ codes) wrapped in IndexRefineFlat (float32 rescoring)."""

    name = "faiss-ivfrabitq"

    def build(self, base, path):
        import faiss

        self.set_threads(self.threads)
        nlist = _nlist(len(base), self.build_params)
        self.index = faiss.index_factory(
            self.dim, f"IVF{nlist},RaBitQ,RFlat", faiss.METRIC_INNER_PRODUCT
        )
        self.index.train(base[_sample(len(base), 64 * nlist)])
        self.index.add(base)
        self._save(path)

    def set_query(self, **params):
        import faiss

        self.query_params = params
        if params:
            ivf = faiss.downcast_index(self.index.base_index)
            ivf.nprobe = params["nprobe"]
            ivf.qb = params.get("qb", 4)
            self.index.k_factor = params["k_factor"]


def _sample(n: int, m: int) -> np.ndarray:
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, m, replace=False))


@register
class FaissBinaryRescore(_Faiss):
    """IndexBinaryFlat over the sign bits of each vector (classic binary
    quantization), Hamming top-C, then exact float32 rescoring of the C rows."""

    name = "faiss-binary+rescore"

    def build(self, base, path):
        import faiss

        self.set_threads(self.threads)
        bits = self.dim + (-self.dim) % 8
        self.index = faiss.IndexBinaryFlat(bits)
        self.index.add(_signs(base, bits))
        faiss.write_index_binary(self.index, os.path.join(path, "index.faissb"))
        np.save(os.path.join(path, "vectors.npy"), base)

    def load(self, path):
        import faiss

        self.index = faiss.read_index_binary(os.path.join(path, "index.faissb"))
        self.base = np.load(os.path.join(path, "vectors.npy"), mmap_mode="r")
        self.bits = self.index.d
        self.set_query()

    def search(self, q, k):
        c = self.query_params.get("C", 100)
        cand = self.index.search(_signs(q.reshape(1, -1), self.bits), c)[1][0]
        return _pad(_topk_rescore(self.base, q, cand, k), k)

    def search_batch(self, queries, k):
        c = self.query_params.get("C", 100)
        cand = self.index.search(_signs(queries, self.bits), c)[1]
        return np.stack([_pad(_topk_rescore(self.base, q, r, k), k) for q, r in zip(queries, cand)])


def _signs(x: np.ndarray, bits: int) -> np.ndarray:
    b = np.zeros((x.shape[0], bits), bool)
    b[:, : x.shape[1]] = x > 0
    return np.packbits(b, axis=1)


# ------------------------------------------------------------------ hnswlib


@register
class Hnswlib(Adapter):
    name = "hnswlib"
    library = "hnswlib"

    def build(self, base, path):
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.init_index(
            max_elements=len(base),
            M=self.build_params.get("M", 16),
            ef_construction=self.build_params.get("efc", 200),
            random_seed=0,
        )
        self.index.add_items(base, np.arange(len(base)), num_threads=self.threads)
        self.index.save_index(os.path.join(path, "index.hnsw"))

    def load(self, path):
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=self.dim)
        self.index.load_index(os.path.join(path, "index.hnsw"))
        self.set_query()

    def set_query(self, **params):
        self.query_params = params
        if params:
            self.index.set_ef(params["ef"])

    def set_threads(self, n):
        self.threads = n
        if hasattr(self, "index"):
            self.index.set_num_threads(n)

    def search(self, q, k):
        return self.index.knn_query(q, k, num_threads=1)[0][0]

    def search_batch(self, queries, k):
        return self.index.knn_query(queries, k, num_threads=self.threads)[0]


# ------------------------------------------------------------------ usearch


@register
class Usearch(Adapter):
    """usearch HNSW. ``dtype=f32``: plain; ``dtype=i8`` (or another quantized
    kind): quantized graph, top-C by the quantized scores, then exact float32
    rescoring of the C rows."""

    name = "usearch"
    library = "usearch"

    def _make(self):
        from usearch.index import Index

        return Index(
            ndim=self.dim,
            metric="ip",
            dtype=self.build_params.get("dtype", "f32"),
            connectivity=self.build_params.get("M", 16),
            expansion_add=self.build_params.get("efc", 128),
        )

    @property
    def rescore(self) -> bool:
        return self.build_params.get("dtype", "f32") != "f32"

    def build(self, base, path):
        self.index = self._make()
        self.index.add(np.arange(len(base)), base, threads=self.threads)
        self.index.save(os.path.join(path, "index.usearch"))
        if self.rescore:
            np.save(os.path.join(path, "vectors.npy"), base)

    def load(self, path):
        from usearch.index import Index

        self.index = Index.restore(os.path.join(path, "index.usearch"), view=False)
        if self.rescore:
            self.base = np.load(os.path.join(path, "vectors.npy"), mmap_mode="r")
        self.set_query()

    def set_query(self, **params):
        self.query_params = params
        if params:
            self.index.expansion_search = params["ef"]

    def _width(self, k):
        return max(k, self.query_params.get("C", k)) if self.rescore else k

    def search(self, q, k):
        keys = self.index.search(q, self._width(k), threads=1).keys
        if self.rescore:
            return _pad(_topk_rescore(self.base, q, keys.astype(np.int64), k), k)
        return keys

    def search_batch(self, queries, k):
        keys = self.index.search(queries, self._width(k), threads=self.threads).keys
        keys = keys.astype(np.int64)
        if self.rescore:
            return np.stack(
                [_pad(_topk_rescore(self.base, q, r, k), k) for q, r in zip(queries, keys)]
            )
        return keys


# -------------------------------------------------------------------- ScaNN


@register
class Scann(Adapter):
    """ScaNN through its numpy API (no TensorFlow): k-means tree of ``leaves``
    partitions, 4-bit anisotropic AH scoring, exact reordering."""

    name = "scann"
    library = "scann"

    def build(self, base, path):
        from scann.scann_ops.py import scann_ops_pybind

        leaves = int(self.build_params.get("leaves") or max(1, round(np.sqrt(len(base)))))
        builder = (
            scann_ops_pybind.builder(base, 10, "dot_product")
            .tree(
                num_leaves=leaves,
                num_leaves_to_search=max(1, leaves // 20),
                training_sample_size=min(len(base), 250_000),
            )
            .score_ah(2, anisotropic_quantization_threshold=0.2)
            .reorder(100)
        )
        if hasattr(builder, "set_n_training_threads"):
            builder = builder.set_n_training_threads(self.threads)
        searcher = builder.build()
        searcher.serialize(path)

    def load(self, path):
        from scann.scann_ops.py import scann_ops_pybind

        self.index = scann_ops_pybind.load_searcher(path)
        self.set_query()

    def set_threads(self, n):
        self.threads = n
        if hasattr(self, "index") and hasattr(self.index, "set_num_threads"):
            self.index.set_num_threads(n)

    def _kw(self) -> dict:
        p = self.query_params
        if not p:
            return {}
        return {"leaves_to_search": p["leaves"], "pre_reorder_num_neighbors": p["reorder"]}

    def search(self, q, k):
        return self.index.search(q, final_num_neighbors=k, **self._kw())[0].astype(np.int64)

    def search_batch(self, queries, k):
        ids = self.index.search_batched_parallel(queries, final_num_neighbors=k, **self._kw())[0]
        return ids.astype(np.int64)


def make(name: str, dim: int, build: dict) -> Adapter:
    return REGISTRY[name](dim, "ip", **build)


def available(name: str) -> Callable[[], None]:
    """A callable that imports the library (raises ImportError if it is missing)."""
    modules = {
        "svve": "svve_core",
        "hnswlib": "hnswlib",
        "usearch": "usearch.index",
        "scann": "scann.scann_ops.py.scann_ops_pybind",
    }
    module = modules.get(name, "faiss")

    def check() -> None:
        __import__(module)

    return check


def index_dir(root: str, label: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_=." else "_" for c in label)
    p = Path(root) / safe
    p.mkdir(parents=True, exist_ok=True)
    return str(p)
