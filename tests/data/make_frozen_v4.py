"""How tests/data/frozen_v4.svve and frozen_v4_answers.json were made (svve-core 0.1.0,
format version 4: the first with spilled entries). Kept as a record: do not re-run it to "fix"
a failing frozen-file test; a failure there means the reader or the pipeline changed
what a v4 file answers.

    uv run python tests/data/make_frozen_v4.py
"""

import json
from pathlib import Path

import numpy as np

import svve_core
from svve_core import IndexConfig, SearchParams

HERE = Path(__file__).parent
rng = np.random.default_rng(20261130)
n, dim = 1200, 40  # 40 dims: one code word, padded; 1200 rows: a partial last block
centers = rng.standard_normal((6, dim)).astype(np.float32) * 2
vectors = (centers[rng.integers(0, 6, n)] + rng.standard_normal((n, dim))).astype(np.float32)
ids = rng.choice(np.arange(-(2**40), 2**40, 7919, dtype=np.int64), n, replace=False)
queries = (vectors[rng.integers(0, n, 16)] + 0.3 * rng.standard_normal((16, dim))).astype(
    np.float32
)
path = HERE / "frozen_v4.svve"
svve_core.build_index(
    path, vectors, ids=ids, metric="l2", config=IndexConfig(partitions=5, spill=True)
)
engine = svve_core.SearchEngine(path)
settings = {
    "default": SearchParams(),
    "recall_0.8": SearchParams(target_recall=0.8),
    "recall_0.99": SearchParams(target_recall=0.99),
    "nprobe1_c20": SearchParams(nprobe=1, candidates=20),
    "no_expansion": SearchParams(expansion=False, nprobe=2),
    "exact": SearchParams(exact=True),
}
answers = {"k": 10, "queries": queries.tolist(), "settings": {}}
for name, p in settings.items():
    got_ids, got_scores = engine.search_batch(queries, k=10, params=p)
    answers["settings"][name] = {
        "params": p.model_dump(exclude_defaults=True),
        "ids": got_ids.tolist(),
        "scores": [[float(s) for s in row] for row in got_scores],
    }
(HERE / "frozen_v4_answers.json").write_text(json.dumps(answers) + "\n")
