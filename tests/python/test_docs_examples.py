"""Every fenced code block of README.md and docs/**/*.md runs as written.

Each page runs in its own temporary working directory (files its examples
write land there), its blocks in document order:

- ``python`` blocks are executed in one namespace per page, so a later
  block uses what an earlier one defined, as a reader following the page
  would;
- ``bash`` / ``console`` blocks are split into commands (``\\`` continuations
  joined, comments dropped; in ``console`` blocks only ``$ `` lines); each
  command runs with ``bash`` in the page's directory, the virtual
  environment's ``bin`` (``svve``, ``python``) first on ``PATH``, unless it
  is in ``NOT_RUN`` below, with the reason it cannot run in a test;
- blocks in a language that is not code (``text``, ``json``) are only
  required to have a language.

A block that raises, or a command that exits non-zero, fails its page's
test with the page and line. ``test_mkdocs_build_strict`` builds the site
with ``mkdocs build --strict`` (broken links, nav entries, API reference).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import traceback
import types
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

import svve_core
import svve_core._svve_core  # needs the built extension, as every test here

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BIN = Path(sys.executable).parent  # the virtual environment's scripts: svve, python

PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell", "console"}
NOT_CODE = {"text", "json"}

# Commands that are not run, with why. A command is matched by prefix, after
# leading VAR=value assignments and a `uv run [--group G]` wrapper (in this
# checkout's environment `uv run X` is `X`; uv itself is not run, as it would
# rebuild the extension). Keep this list short: every entry is documentation
# that no test checks.
NOT_RUN: Dict[str, str] = {
    "pip install": "installs from PyPI (network), over the development build",
    "cargo test": "the whole test suite (this test is part of it)",
    "python -m benchmarks": "benchmark runs take minutes to hours, with the bench group",
    # Servers run until stopped (tests/python/test_server.py starts the
    # example server under uvicorn and gunicorn).
    "uvicorn": "starts a server",
    "gunicorn": "starts a server",
    "mkdir -p /srv/index": "writes to /srv, outside the test's directory",
}

# Programs a documented command may run; a command (each part of a chain:
# `&&`, `||`, `;`, `|`) that starts with anything else must be in NOT_RUN,
# so that no test runs an arbitrary command from a page.
RUNNABLE = {"svve", "python", "mkdir", "ln", "mv", "ls", "cat", "echo"}


class Block(NamedTuple):
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if ROOT in self.page.parents else self.page
        return f"{page}:{self.line}"


_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def blocks(page: Path) -> List[Block]:
    """The fenced code blocks of ``page``, in order (indented fences, as in
    admonitions and tabs, included; their indentation removed)."""
    out: List[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        lang = m["info"].strip().split(" ")[0].lstrip("{.").rstrip("}").lower()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page}:{start}: unclosed code fence")
        out.append(Block(page, start, lang, "\n".join(body) + "\n"))
        i += 1
    return out


def commands(block: Block) -> Iterator[str]:
    """The shell commands of a bash or console block: ``\\`` continuations
    joined, quoted strings over several lines (``python -c "..."``) kept whole,
    comments dropped."""
    lines = block.code.splitlines()
    if block.lang == "console":
        lines = [ln[2:] for ln in lines if ln.startswith("$ ")]
    pending = ""
    for raw in lines:
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            pending += "\n"
            continue
        yield pending.strip()
        pending = ""
    assert not pending, f"{block.where}: a command is not finished: {pending!r}"


def program(command: str) -> str:
    """``command`` without leading ``VAR=value`` assignments and ``uv run``
    (with its ``--group G`` options)."""
    words = command.split()
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    if words[:2] == ["uv", "run"]:
        words = words[2:]
        while words[:1] == ["--group"]:
            words = words[2:]
    return " ".join(words)


def parts(command: str) -> List[str]:
    """The simple commands of a chain (``a && b | c; d``)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: List[List[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            out.append([])
        else:
            out[-1].append(token)
    return [shlex.join(p) for p in out if p]


def not_run_reason(command: str) -> str:
    cmd = program(command)
    for prefix, reason in NOT_RUN.items():
        if cmd.startswith(prefix):
            return reason
    return ""


# `uv run [--group G] X` runs X in the environment this test runs in.
UV_RUN = """uv() {
  [ "$1" = run ] || { echo "uv $1: only uv run is supported here" >&2; return 2; }
  shift
  while [ "${1:-}" = --group ]; do shift 2; done
  "$@"
}
"""


def run_shell(block: Block, cwd: Path) -> None:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("SVVE_NUM_THREADS", None)
    for command in commands(block):
        if not_run_reason(command):
            continue
        for part in parts(command):
            first = program(part).split(" ")[0]
            assert first in RUNNABLE, (
                f"{block.where}: `{part}` is neither runnable here ({sorted(RUNNABLE)}) nor in "
                "NOT_RUN; make it runnable, or add it to NOT_RUN with the reason"
            )
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", UV_RUN + command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (
            f"{block.where}: `{command}` exited {done.returncode}\n"
            f"stdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[-2000:]}"
        )


def run_python(block: Block, namespace: dict) -> None:
    # Blank lines first, so that tracebacks give the line in the page.
    source = "\n" * block.line + block.code
    exec(compile(source, str(block.page), "exec"), namespace)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SVVE_NUM_THREADS", raising=False)
    threads = svve_core.num_threads()
    # One module per page, registered like an imported one (pydantic and
    # FastAPI resolve the models a page defines through sys.modules).
    module = types.ModuleType("svve_docs_page")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    try:
        for block in blocks(page):
            assert block.lang, f"{block.where}: give the code block a language"
            if block.lang in PYTHON:
                run_python(block, namespace)
            elif block.lang in SHELL:
                run_shell(block, tmp_path)
            else:
                assert block.lang in NOT_CODE, (
                    f"{block.where}: code block language {block.lang!r} is neither run "
                    f"({sorted(PYTHON | SHELL)}) nor known not to be code ({sorted(NOT_CODE)})"
                )
    finally:
        svve_core.set_num_threads(threads)  # a page may size the pool


def test_not_run_entries_are_used() -> None:
    """Every NOT_RUN entry matches a documented command (no stale exceptions)."""
    documented = [
        program(c) for p in PAGES for b in blocks(p) if b.lang in SHELL for c in commands(b)
    ]
    unused = [prefix for prefix in NOT_RUN if not any(c.startswith(prefix) for c in documented)]
    assert not unused, f"NOT_RUN entries no page uses: {unused}"


def test_a_broken_block_fails(tmp_path: Path) -> None:
    """The runner reports a failing block with its page and line."""
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\nassert x == 2\n```\n\n```bash\nfalse\n```\n")
    py, sh = blocks(page)
    with pytest.raises(AssertionError) as info:
        run_python(py, {})
    frame = traceback.extract_tb(info.tb)[-1]
    assert (frame.filename, frame.lineno) == (str(page), 5)  # the page's line of the assert
    with pytest.raises(AssertionError, match="neither runnable"):
        run_shell(sh, tmp_path)
    with pytest.raises(AssertionError, match="exited 2"):
        run_shell(Block(page, 9, "bash", "svve no-such-command\n"), tmp_path)


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds with no warning (links, nav, anchors, API reference)."""
    pytest.importorskip("mkdocstrings_handlers.python", reason="needs the dev group (mkdocs)")
    config, site = str(ROOT / "mkdocs.yml"), str(tmp_path / "site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "-d", site],
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
