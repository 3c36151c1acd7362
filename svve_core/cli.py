"""The ``svve`` command: build, search, info and demo (see docs/cli.md).

Every bad input ends as one line on stderr, ``svve: error: ...``, and exit
status 2, never a traceback; so do the library's own errors (``SVVEError``).
Inputs follow the Python API's rules: vectors and queries float32 (``--cast``
converts other float widths), ids integers, never rounded. The search knobs
and the build options are generated from ``SearchParams`` and ``IndexConfig``,
so a knob added to the Rust spec appears here without an edit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from typing import IO, Any, Dict, List, Literal, NoReturn, Optional, Sequence, Tuple, Type

import numpy as np
from pydantic import BaseModel

from svve_core import demo
from svve_core.engine import SearchEngine, build_index
from svve_core.exceptions import (
    InvalidDTypeError,
    InvalidFilterError,
    InvalidInputError,
    InvalidShapeError,
    SVVEError,
)
from svve_core.schemas import IndexConfig, SearchParams

_INT64_MAX = int(np.iinfo(np.int64).max)
_ALIASES = {"target_recall": ["--recall"]}  # extra spellings of a generated option


class ProgressBar:
    """A one-line progress bar redrawn in place on ``stream`` (stderr)."""

    def __init__(self, label: str, width: int = 30, stream: Optional[IO[str]] = None) -> None:
        self.label, self.width, self.last, self.open = label, width, -1, False
        self.stream = stream if stream is not None else sys.stderr

    def __call__(self, done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct != self.last:
            self.last, self.open = pct, True
            filled = self.width * min(done, total) // max(total, 1)
            bar = "#" * filled + "." * (self.width - filled)
            self.stream.write(f"\r{self.label} [{bar}] {pct:3d}%")
            if done >= total:
                self.close()
            self.stream.flush()

    def close(self) -> None:
        """End the line (after the last step, or when the build stops early)."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


def _npy_header(path: str, what: str) -> Tuple[Tuple[int, ...], np.dtype]:
    """Shape and dtype of the .npy file ``path``, or a one-line error naming ``what``."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":
                f.seek(0)
                npz = f.read(2) == b"PK"
                hint = " (a .npz archive: save one array with np.save)" if npz else ""
                raise InvalidInputError(f"{what} {path}: not a .npy file{hint}")
            f.seek(0)
            version = fmt.read_magic(f)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
    except InvalidInputError:
        raise
    except FileNotFoundError:
        raise InvalidInputError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{what} {path}: is a directory, not a .npy file") from None
    except OSError as e:
        raise InvalidInputError(f"{what} {path}: cannot read: {e.strerror or e}") from None
    except ValueError as e:
        raise InvalidInputError(f"{what} {path}: not a valid .npy file: {e}") from None
    if dtype.hasobject:
        raise InvalidDTypeError(
            f"{what} {path}: holds Python objects (a pickled array), which svve never loads; "
            "save a numeric array"
        )
    return shape, dtype


def _read_npy(path: str, what: str, ndims: Sequence[int], shape_text: str) -> np.ndarray:
    """The array in ``path`` (memory-mapped unless empty), of a rank in ``ndims``."""
    shape, _ = _npy_header(path, what)
    if len(shape) not in ndims:
        raise InvalidShapeError(f"{what} {path}: must be {shape_text}, got shape {shape}")
    try:
        mmap: Optional[Literal["r"]] = "r" if int(np.prod(shape)) > 0 else None
        a: np.ndarray = np.load(path, mmap_mode=mmap, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InvalidInputError(f"{what} {path}: cannot read: {e} (truncated file?)") from None
    return a


def _read_floats(
    path: str, what: str, cast: bool, ndims: Sequence[int], shape_text: str
) -> np.ndarray:
    """A float32 array from ``path``: float32 as stored; other float widths only with ``--cast``."""
    a = _read_npy(path, what, ndims, shape_text)
    if a.dtype == np.float32:
        return a
    if not cast or a.dtype.kind != "f":
        hint = " or pass --cast" if a.dtype.kind == "f" else ""
        raise InvalidDTypeError(
            f"{what} {path}: must have dtype float32, got {a.dtype}; save it as float32{hint}"
        )
    with np.errstate(over="ignore"):
        out = a.astype(np.float32)
    overflow = np.argwhere(np.isinf(out) & np.isfinite(a))
    if overflow.size:
        where = ", ".join(str(int(i)) for i in overflow[0])
        raise InvalidInputError(
            f"{what} {path}: --cast: the value at [{where}] is beyond float32's range"
        )
    return out


def _read_ids(path: str) -> np.ndarray:
    """int64 ids: any integer dtype whose values fit int64; never floats (no rounding)."""
    a = _read_npy(path, "--ids", (1,), "1-D (n,)")
    if a.dtype.kind == "u" and a.size and int(a.max()) > _INT64_MAX:
        raise InvalidInputError(f"--ids {path}: an id is above 2**63-1 (ids are int64)")
    if a.dtype.kind not in "iu":
        raise InvalidDTypeError(
            f"--ids {path}: ids must be integers (int8..int64, uint8..uint64), got {a.dtype}; "
            "ids are never rounded"
        )
    return np.ascontiguousarray(a, dtype=np.int64)


def _load_attributes(path: Optional[str]) -> Optional[Dict[str, Any]]:
    """Attributes from a .npz (one array per name) or a .json (name -> list)."""
    if path is None:
        return None
    what = f"--attributes {path}"
    if os.path.isdir(path):
        raise InvalidInputError(f"{what}: is a directory")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InvalidInputError(f"{what}: no such file") from None
    except OSError as e:
        raise InvalidInputError(f"{what}: cannot read: {e.strerror or e}") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as e:  # bad JSON, UTF-8, zip, pickles
        kind = ".npz" if path.endswith(".npz") else "JSON"
        raise InvalidInputError(f"{what}: not a valid {kind} file: {e}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{what}: expected a JSON object of lists")
    return data


def _check_output(path: str) -> None:
    """Fail before any work if the index cannot be written at ``path``."""
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise InvalidInputError(f"output {path}: is a directory; name a file, e.g. {path}/x.svve")
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        raise InvalidInputError(f"output {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInputError(f"output {path}: directory {parent} is not writable")


def _add_model_options(p: argparse.ArgumentParser, model: Type[BaseModel], title: str) -> None:
    """One option per field of ``model``: ``--name`` (``--name/--no-name`` for a bool),
    with its type, description and default from the model."""
    group = p.add_argument_group(title)
    for name, field in model.model_fields.items():
        flags = [*_ALIASES.get(name, []), "--" + name.replace("_", "-")]
        text = f"{field.description or ''} (default {field.default})".replace("%", "%%")
        kind: Any = field.annotation
        if kind is bool:
            action: Any = argparse.BooleanOptionalAction
            group.add_argument(*flags, dest="opt_" + name, action=action, help=text)
        else:
            metavar = getattr(kind, "__name__", "VALUE").upper()
            group.add_argument(*flags, dest="opt_" + name, type=kind, metavar=metavar, help=text)


def model_from(args: argparse.Namespace, model: Type[BaseModel]) -> Any:
    """``model`` built from the options the command line gave (others keep their defaults)."""
    given = {n: getattr(args, "opt_" + n) for n in model.model_fields}
    return model(**{n: v for n, v in given.items() if v is not None})


def cmd_build(a: argparse.Namespace) -> int:
    _check_output(a.index)
    config = model_from(a, IndexConfig)
    vectors = _read_floats(a.vectors, "vectors", a.cast, (2,), "2-D (n, dim)")
    ids = _read_ids(a.ids) if a.ids else None
    if ids is not None and ids.shape[0] != vectors.shape[0]:
        raise InvalidShapeError(f"--ids {a.ids}: {ids.shape[0]} ids for {vectors.shape[0]} vectors")
    attributes = _load_attributes(a.attributes)
    show = a.progress if a.progress is not None else sys.stderr.isatty()
    bar = ProgressBar("build") if show else None
    try:
        info = build_index(a.index, vectors, ids, a.metric, config, bar, attributes)
    finally:
        if bar is not None:
            bar.close()
    print(info.model_dump_json(indent=2))
    return 0


def cmd_search(a: argparse.Namespace) -> int:
    params = model_from(a, SearchParams)
    try:
        flt = json.loads(a.filter) if a.filter is not None else None
    except json.JSONDecodeError as e:
        raise InvalidFilterError(f"invalid filter: --filter is not valid JSON: {e}") from None
    engine = SearchEngine(a.index)
    queries = _read_floats(a.queries, "queries", a.cast, (1, 2), "1-D (dim,) or 2-D (b, dim)")
    if queries.ndim == 1:
        queries = queries[None, :]
    ids, scores = engine.search_batch(queries, a.k, params, filter=flt)
    for i, (row_ids, row_scores) in enumerate(zip(ids, scores)):
        print(json.dumps({"query": i, "ids": row_ids.tolist(), "scores": row_scores.tolist()}))
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    print(SearchEngine(a.index).info().model_dump_json(indent=2))
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    if a.k < 1 or (a.queries is not None and a.queries < 1):
        raise InvalidInputError("demo: -k and --queries must be at least 1")
    # The loader raises InvalidInputError naming the file for a bad dataset.
    return demo.run(a.dataset, a.k, a.queries)


class _VersionAction(argparse.Action):
    """``--version``: the package version, the build id and the kernels' instruction set."""

    def __init__(self, option_strings: List[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, p: argparse.ArgumentParser, *args: Any) -> NoReturn:
        import svve_core

        print(f"svve {svve_core.__version__} (build {svve_core.build_id()}, {svve_core.isa()})")
        p.exit(0)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line: ``svve: error: ...``, status 2."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.partition(" ")[2]  # the subcommand, if any
        head = f"svve: error: {where}: " if where else "svve: error: "
        self.exit(2, f"{head}{message} (see {self.prog} -h)\n")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="svve", description="svve-core vector search (docs/cli.md)")
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("build", help="build an index file from a .npy matrix (n, dim)")
    b.add_argument("vectors", help=".npy of float32 vectors (n, dim)")
    b.add_argument("index", help="the index file to write (replaced atomically)")
    b.add_argument("--ids", help=".npy of integer ids (n,) (default 0..n-1); floats rejected")
    b.add_argument(
        "--attributes",
        help="row attributes to filter on: a .npz (one array per name) or a .json "
        "(name -> list of values)",
    )
    b.add_argument("--metric", default="cosine", choices=["cosine", "ip", "l2"])
    b.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="draw a progress bar on stderr (default: only when stderr is a terminal)",
    )
    _add_model_options(b, IndexConfig, "index options (IndexConfig)")
    s = sub.add_parser("search", help="search an index with queries from a .npy file")
    s.add_argument("index")
    s.add_argument("queries", help=".npy of float32 queries: one (dim,) or several (b, dim)")
    s.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    s.add_argument(
        "--filter",
        help='only rows matching this JSON filter, e.g. \'{"lang": "en", "price": {"$lt": 20}}\'',
    )
    _add_model_options(s, SearchParams, "search knobs (SearchParams)")
    for c in (b, s):
        c.add_argument(
            "--cast",
            action="store_true",
            help="convert float64/float16 input to float32 (rounds to float32 precision; "
            "values beyond float32's range are an error)",
        )
    b.set_defaults(func=cmd_build)
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
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    try:
        return int(args.func(args))
    except SVVEError as e:
        print(f"svve: error: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("svve: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `svve search ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
