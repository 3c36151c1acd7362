"""A deterministic write workload for live-collection crash tests, shared by
the test (which replays it as a numpy model) and the child process it kills
(``python collection_workload.py DIR START``).

Commit ``j`` applies ``ops_for(j, model)`` and then commits (every 5th
compacts instead). Everything is a function of ``j`` and the model before
it, so the parent can rebuild the model after any number of commits.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Tuple

import numpy as np

from svve_core import Collection, CollectionConfig

DIM = 8
# Checkpoints and merges every few commits, so kills land in all of them.
CONFIG = CollectionConfig(fresh_rows=50, merge_factor=2)

Model = Dict[int, np.ndarray]
Op = Tuple[str, np.ndarray, np.ndarray]  # (kind, ids, vectors)


def ops_for(j: int, model: Model) -> List[Op]:
    """The changes of commit ``j``, applied to ``model`` as they are made."""
    rng = np.random.default_rng(10_000 + j)
    ops: List[Op] = []
    for t in range(int(rng.integers(1, 4))):
        kind = str(rng.choice(["add", "upsert", "delete"], p=[0.5, 0.25, 0.25]))
        live = np.array(sorted(model), dtype=np.int64)
        if kind == "add" or len(live) == 0:
            n = int(rng.integers(1, 40))
            ids = j * 1000 + t * 100 + np.arange(n, dtype=np.int64)
            x = rng.standard_normal((n, DIM)).astype(np.float32)
            ops.append(("add", ids, x))
        elif kind == "upsert":
            old = rng.choice(live, size=min(len(live), int(rng.integers(1, 10))), replace=False)
            ids = np.concatenate([old, [j * 1000 + 900 + t]]).astype(np.int64)
            x = rng.standard_normal((len(ids), DIM)).astype(np.float32)
            ops.append(("upsert", ids, x))
        else:
            ids = rng.choice(live, size=min(len(live), int(rng.integers(1, 30))), replace=False)
            ops.append(("delete", ids.astype(np.int64), np.empty((0, DIM), np.float32)))
        apply(model, ops[-1])
    return ops


def apply(model: Model, op: Op) -> None:
    kind, ids, x = op
    if kind == "delete":
        for i in ids.tolist():
            model.pop(i, None)
    else:
        model.update(zip(ids.tolist(), x))


def model_after(j: int) -> Model:
    """The rows after commit ``j`` (0: empty)."""
    model: Model = {}
    for i in range(1, j + 1):
        ops_for(i, model)
    return model


def compacts(j: int) -> bool:
    return j % 5 == 0


def run(directory: str, start: int) -> None:
    """Applies commits ``start + 1, ...`` forever, journaling each commit's
    start (``begin j``) and return (``end j``), fsynced, in ``journal``."""
    col = Collection.open(directory)
    model = model_after(start)
    fd = os.open(os.path.join(directory, "..", "journal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    j = start
    while True:
        j += 1
        for kind, ids, x in ops_for(j, model):
            if kind == "add":
                col.add(x, ids=ids)
            elif kind == "upsert":
                col.upsert(x, ids)
            else:
                col.delete(ids)
        os.write(fd, f"begin {j}\n".encode())
        os.fsync(fd)
        col.compact() if compacts(j) else col.commit()
        os.write(fd, f"end {j}\n".encode())
        os.fsync(fd)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
