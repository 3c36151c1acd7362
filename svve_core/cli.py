"""The ``svve`` command: build, search, info and demo."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

import numpy as np

from svve_core import demo
from svve_core.engine import SearchEngine, build_index
from svve_core.exceptions import InvalidFilterError, InvalidParameterError, SVVEError
from svve_core.schemas import IndexConfig, SearchParams


class ProgressBar:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, width: int = 30) -> None:
        self.label, self.width, self.last = label, width, -1

    def __call__(self, done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct != self.last:
            self.last = pct
            filled = self.width * done // max(total, 1)
            sys.stderr.write(
                f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {pct:3d}%"
            )
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _load_matrix(path: str) -> np.ndarray:
    a = np.load(path, allow_pickle=False)
    return np.ascontiguousarray(a, dtype=np.float32)


def _load_attributes(path: Optional[str]) -> Optional[Dict[str, Any]]:
    """Attributes from a .npz (one array per name) or a .json (name -> list)."""
    if path is None:
        return None
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidParameterError(f"--attributes {path}: {e}") from None
    if not isinstance(data, dict):
        raise InvalidParameterError(f"--attributes {path}: expected a JSON object of lists")
    return data


def cmd_build(a: argparse.Namespace) -> int:
    vectors = _load_matrix(a.vectors)
    ids = np.load(a.ids, allow_pickle=False).astype(np.int64) if a.ids else None
    info = build_index(
        a.index,
        vectors,
        ids,
        metric=a.metric,
        config=IndexConfig(center=not a.no_center, calibrate=not a.no_calibrate),
        progress=ProgressBar("build"),
        attributes=_load_attributes(a.attributes),
    )
    print(info.model_dump_json(indent=2))
    return 0


def cmd_search(a: argparse.Namespace) -> int:
    engine = SearchEngine(a.index)
    queries = _load_matrix(a.queries)
    if queries.ndim == 1:
        queries = queries[None, :]
    params = SearchParams(
        target_recall=a.recall, exact=a.exact, candidates=a.candidates, nprobe=a.nprobe
    )
    try:
        flt = json.loads(a.filter) if a.filter else None
    except json.JSONDecodeError as e:
        raise InvalidFilterError(f"invalid filter: --filter is not valid JSON: {e}") from None
    ids, scores = engine.search_batch(queries, a.k, params, filter=flt)
    for i, (row_ids, row_scores) in enumerate(zip(ids, scores)):
        print(json.dumps({"query": i, "ids": row_ids.tolist(), "scores": row_scores.tolist()}))
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    print(SearchEngine(a.index).info().model_dump_json(indent=2))
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    return demo.run(a.dataset, a.k, a.queries)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="svve", description="svve-core vector search")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build an index file from a .npy matrix (n, dim)")
    b.add_argument("vectors")
    b.add_argument("index")
    b.add_argument("--ids", help=".npy of int64 ids (default 0..n-1)")
    b.add_argument(
        "--attributes",
        help="row attributes to filter on: a .npz (one array per name) or a .json "
        "(name -> list of values)",
    )
    b.add_argument("--metric", default="cosine", choices=["cosine", "ip", "l2"])
    b.add_argument("--no-center", action="store_true", help="do not centre before sign coding")
    b.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip the recall calibration (searches then use fixed rules)",
    )
    b.set_defaults(func=cmd_build)
    s = sub.add_parser("search", help="search an index with queries from a .npy file")
    s.add_argument("index")
    s.add_argument("queries", help=".npy of one query (dim,) or several (b, dim)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument(
        "--recall",
        type=float,
        default=SearchParams().target_recall,
        help="mean recall@k to reach, as calibrated at build (default %(default)s; 1 = exact)",
    )
    s.add_argument("--exact", action="store_true")
    s.add_argument("--candidates", type=int, default=0, help="override the calibrated count")
    s.add_argument("--nprobe", type=int, default=0, help="override the calibrated count")
    s.add_argument(
        "--filter",
        help='only rows matching this JSON filter, e.g. \'{"lang": "en", "price": {"$lt": 20}}\'',
    )
    s.set_defaults(func=cmd_search)
    i = sub.add_parser("info", help="print an index's manifest and sizes")
    i.add_argument("index")
    i.set_defaults(func=cmd_info)
    d = sub.add_parser("demo", help="build a demo index from shipped data and measure it")
    d.add_argument("--dataset", help="a dataset directory (base.npy, queries.npy, gt.npy)")
    d.add_argument("-k", type=int, default=10)
    d.add_argument("--queries", type=int, help="use only the first N queries")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SVVEError as e:
        print(f"svve: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
