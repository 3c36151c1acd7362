"""Load test of the example server: throughput, latency and shared memory.

Starts the real server (app.py) on 127.0.0.1 with 1, 2 and 4 workers, drives
it from a separate client process (asyncio, raw HTTP/1.1 keep-alive: far less
client CPU per request than an HTTP library, which matters on a small
machine where client and server share the cores), and reports per run:
throughput, p50/p99 latency, the summed PSS of the worker processes, the PSS
of the index file's mappings over all server processes, and the index file
size. PSS splits each shared page between the processes mapping it, so the
index counts about once however many workers map it (RSS counts it per
worker: shown too).

    uv run --group serve python examples/server/loadtest.py \\
        --dataset ../shared/datasets/debian-minilm-384

Builds the index once into results/server-loadtest/ (base.npy float16 ->
float32, cosine). ``--swap`` adds a run that renames a new index file over
the served one in the middle of the load (the zero-downtime deployment) and
counts failed requests. Every run is bounded by ``--duration`` and
``--max-requests``; traffic only goes to the loopback server started here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "debian-minilm-384"
HOST = "127.0.0.1"


# --- client (runs in its own process) ---------------------------------------------


def _request_bytes(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> Tuple[int, bytes]:
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _open_balanced(
    port: int, concurrency: int, workers: int
) -> List[Tuple[asyncio.StreamReader, asyncio.StreamWriter, int]]:
    """``concurrency`` keep-alive connections, spread evenly over the workers
    (each new connection asks GET /info which worker accepted it; surplus ones
    are closed and retried), so the run measures the server, not accept luck."""
    info = f"GET /info HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    per_worker = -(-concurrency // workers)
    conns: List[Tuple[asyncio.StreamReader, asyncio.StreamWriter, int]] = []
    counts: Dict[int, int] = {}
    for _ in range(concurrency * 50):
        if len(conns) == concurrency:
            break
        reader, writer = await asyncio.open_connection(HOST, port)
        _, body = await _roundtrip(reader, writer, info)
        pid = json.loads(body)["pid"]
        if counts.get(pid, 0) >= per_worker:
            writer.close()
            continue
        counts[pid] = counts.get(pid, 0) + 1
        conns.append((reader, writer, pid))
    return conns


async def _client(args: argparse.Namespace) -> Dict[str, Any]:
    queries = np.load(args.queries).astype(np.float32)
    bodies = []
    for q in queries:
        if args.encoding == "b64":
            payload = {"vector_b64": base64.b64encode(q.astype("<f4").tobytes()).decode()}
        else:
            payload = {"vector": q.tolist()}
        bodies.append(_request_bytes("/search", json.dumps({**payload, "k": args.k}).encode()))
    conns = await _open_balanced(args.port, args.concurrency, args.workers)
    start = time.monotonic() + args.warmup
    end = start + args.duration
    budget = [args.max_requests]
    sent = [0]  # warm-up included
    records: List[Tuple[float, float, int]] = []  # (start, latency, status)

    async def run(reader: Any, writer: Any, seed: int) -> None:
        i = seed
        while budget[0] > 0:
            t0 = time.monotonic()
            if t0 >= end:
                return
            try:
                status, _ = await _roundtrip(reader, writer, bodies[i % len(bodies)])
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                status = 0  # connection-level failure
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, args.port)
            t1 = time.monotonic()
            sent[0] += 1
            if t0 >= start:
                records.append((t0, t1 - t0, status))
                budget[0] -= 1
            i += 1

    rng = random.Random(0)
    await asyncio.gather(*(run(r, w, rng.randrange(len(bodies))) for r, w, _ in conns))
    for _, w, _ in conns:
        w.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    arr = np.array(records, dtype=np.float64).reshape(-1, 3)
    np.save(args.out, arr)
    per_worker: Dict[int, int] = {}
    for *_, pid in conns:
        per_worker[pid] = per_worker.get(pid, 0) + 1
    return {
        "connections_per_worker": sorted(per_worker.values()),
        "client_cpu_s": usage.ru_utime + usage.ru_stime,
        "sent": sent[0],
        "measured_s": min(args.duration, max(time.monotonic() - start, 1e-9)),
    }


def client_main(argv: List[str]) -> None:
    p = argparse.ArgumentParser(prog="loadtest.py client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--max-requests", type=int, default=500_000)
    p.add_argument("--encoding", choices=("b64", "json"), default="b64")
    p.add_argument("-k", type=int, default=10)
    args = p.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    print(json.dumps(asyncio.run(_client(args))))


# --- server processes and memory ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> Dict[str, Any]:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return json.loads(r.read())
    finally:
        conn.close()


def _group(pgid: int) -> List[int]:
    """Pids of the processes in process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry))
    return sorted(pids)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rollup(pid: int) -> Dict[str, int]:
    """kB fields of /proc/PID/smaps_rollup (Rss, Pss...)."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            out[name] = int(parts[0])
    return out


def _file_mappings(pid: int, path: str) -> Dict[str, int]:
    """kB of /proc/PID/smaps mappings of ``path``: its Rss and Pss, and the Pss
    of mappings of replaced index files still held ("... (deleted)")."""
    out = {"rss": 0, "pss": 0, "stale_pss": 0}
    key = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        first = line.split(None, 1)[0]
        if "-" in first and not first.endswith(":"):  # a mapping header line
            fields = line.split(None, 5)
            name = fields[5] if len(fields) == 6 else ""
            key = "" if name == path else "stale_" if name.endswith(".svve (deleted)") else None
        elif key == "" and first in ("Rss:", "Pss:"):
            out[first[:-1].lower()] += int(line.split()[1])
        elif key == "stale_" and first == "Pss:":
            out["stale_pss"] += int(line.split()[1])
    return out


def _system_busy() -> Tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    hz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hz, total / hz


class Server:
    def __init__(self, mode: str, workers: int, index_dir: Path, log: Path) -> None:
        self.port = _free_port()
        threads = max(1, (os.cpu_count() or 1) // workers)
        env = {
            **os.environ,
            "SVVE_INDEX_DIR": os.fspath(index_dir),
            "SVVE_NUM_THREADS": str(threads),
            "SVVE_WATCH_INTERVAL": "1",
        }
        if mode == "uvicorn":
            argv = [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--app-dir",
                os.fspath(HERE),
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ]
        else:
            argv = [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                os.fspath(HERE / "gunicorn.conf.py"),
                "--bind",
                f"{HOST}:{self.port}",
                "--log-level",
                "warning",
                "app:app",
            ]
            preload = {"gunicorn": "0", "gunicorn-preload": "index"}.get(mode, "code")
            env.update(SVVE_WORKERS=str(workers), SVVE_PRELOAD=preload)
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=HERE,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers = workers

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()}")
            with contextlib.suppress(OSError):
                _get(self.port, "/health")
                if len(self.worker_pids()) >= self.workers:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.log.read_text()}")

    def pids(self) -> List[int]:
        return _group(self.proc.pid)

    def worker_pids(self) -> List[int]:
        """Children of the master, or the master itself when it serves alone."""
        children = [
            p
            for p in self.pids()
            if p != self.proc.pid
            and _parent(p) == self.proc.pid
            and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        return children or [self.proc.pid]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def memory(server: Server, index_path: str) -> Dict[str, float]:
    """MiB: PSS and RSS of the workers, of everything in the server's group,
    and of the index file's mappings (over every process of the group)."""
    workers = set(server.worker_pids())
    names = ("pss_workers", "rss_workers", "pss_all", "index_pss", "index_rss", "stale_pss")
    out = dict.fromkeys(names, 0.0)
    for pid in server.pids():
        roll = _rollup(pid)
        index = _file_mappings(pid, index_path)
        out["pss_all"] += roll["Pss"] / 1024
        out["index_pss"] += index["pss"] / 1024
        out["index_rss"] += index["rss"] / 1024
        out["stale_pss"] += index["stale_pss"] / 1024
        if pid in workers:
            out["pss_workers"] += roll["Pss"] / 1024
            out["rss_workers"] += roll["Rss"] / 1024
    return out


# --- orchestration ------------------------------------------------------------------


def build(dataset: Path, index_dir: Path) -> Path:
    import svve_core

    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / "current.svve"
    try:
        svve_core.SearchEngine(path)
    except svve_core.exceptions.IndexNotFoundError:
        pass
    except svve_core.exceptions.IndexFormatError as e:  # built by another library version
        print(f"rebuilding: {e}", file=sys.stderr)
        path.unlink()
    if not path.exists():
        base = np.load(dataset / "base.npy").astype(np.float32)
        t = time.perf_counter()
        svve_core.build_index(path, base, metric="cosine")
        print(
            f"built {path} ({base.shape[0]} x {base.shape[1]}) in {time.perf_counter() - t:.1f} s",
            file=sys.stderr,
        )
    return path


def recall_at_10(port: int, queries: np.ndarray, gt: np.ndarray, count: int = 200) -> float:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    hits = 0
    for q, truth in zip(queries[:count], gt[:count]):
        body = json.dumps({"vector_b64": base64.b64encode(q.tobytes()).decode(), "k": 10})
        conn.request("POST", "/search", body, {"content-type": "application/json"})
        ids = json.loads(conn.getresponse().read())["ids"]
        hits += len(set(ids) & set(truth[:10].tolist()))
    conn.close()
    return hits / (10 * min(count, len(queries)))


def run_one(
    mode: str, workers: int, args: argparse.Namespace, index_path: Path, swap: bool, tmp: Path
) -> Dict[str, Any]:
    index_dir = index_path.parent
    if swap:  # a new file with the same contents: a new inode, as a new build would be
        shutil.copyfile(index_path, index_dir / "next.svve.tmp")
    server = Server(mode, workers, index_dir, tmp / f"{mode}-{workers}.log")
    try:
        server.wait_ready()
        queries = np.load(args.dataset / "queries.npy").astype(np.float32)
        gt = np.load(args.dataset / "gt.npy")
        recall = recall_at_10(server.port, queries, gt)
        out = tmp / f"{mode}-{workers}.npy"
        client = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "client",
                "--port",
                str(server.port),
                "--queries",
                os.fspath(args.dataset / "queries.npy"),
                "--out",
                os.fspath(out),
                "--workers",
                str(workers),
                "--concurrency",
                str(args.concurrency),
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
                "--max-requests",
                str(args.max_requests),
                "--encoding",
                args.encoding,
            ],
            stdout=subprocess.PIPE,
        )
        cpu0 = sum(_cpu_seconds(p) for p in server.pids())
        busy0, total0 = _system_busy()
        swapped_at = None
        if swap:
            time.sleep(args.warmup + args.duration / 2)
            os.replace(index_dir / "next.svve.tmp", index_path)
            swapped_at = time.monotonic()
        stdout, _ = client.communicate(timeout=args.warmup + args.duration + 120)
        busy1, total1 = _system_busy()
        cpu1 = sum(_cpu_seconds(p) for p in server.pids())
        if client.returncode:
            raise RuntimeError(f"client failed ({client.returncode})")
        summary = json.loads(stdout)
        reloads = [_get(server.port, "/info")["reloads"] for _ in range(4 * workers)]
        mem = memory(server, os.fspath(index_path.resolve()))
    finally:
        server.stop()
    rec = np.load(out)
    ok = rec[:, 2] == 200
    lat = rec[ok, 1] * 1000
    elapsed = summary["measured_s"]
    # CPU of the machine during the run not used by this server or its client:
    # other people's work, which the numbers below compete with.
    other = (busy1 - busy0) - (cpu1 - cpu0) - summary["client_cpu_s"]
    row = {
        "mode": mode,
        "workers": workers,
        "swap": swap,
        "requests": len(rec),
        "failed": int((~ok).sum()),
        "rps": float(ok.sum() / elapsed),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "recall10": recall,
        "server_cpu_s": cpu1 - cpu0,
        "server_us_per_request": (cpu1 - cpu0) / max(summary["sent"], 1) * 1e6,
        "client_cpu_s": summary["client_cpu_s"],
        "other_cpu_s": max(other, 0.0),
        "wall_s": (total1 - total0) / (os.cpu_count() or 1),
        "connections_per_worker": summary["connections_per_worker"],
        "reloads_seen": sorted(set(reloads)),
        **mem,
    }
    if swapped_at is not None:
        window = ok & (np.abs(rec[:, 0] - swapped_at) < 1.0)
        row["p99_ms_swap_window"] = float(np.percentile(rec[window, 1] * 1000, 99))
    return row


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem} RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def table(rows: List[Dict[str, Any]], index_mib: float) -> str:
    lines = [
        "| server | workers | req/s | req/s range | p50 ms | p99 ms | failed | server CPU us/req "
        "| PSS workers MiB | RSS workers MiB | PSS all MiB | index PSS MiB | index file MiB "
        "| other CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["swap"]:
            continue
        name = r["mode"]
        other = r["other_cpu_s"] / max(r["wall_s"], 1e-9)
        lines.append(
            f"| {name} | {r['workers']} | {r['rps']:,.0f} | "
            f"{r['rps_range'][0]:,.0f}-{r['rps_range'][1]:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['failed']} | {r['server_us_per_request']:.0f} | "
            f"{r['pss_workers']:.0f} | "
            f"{r['rss_workers']:.0f} | {r['pss_all']:.0f} | {r['index_pss']:.1f} | "
            f"{index_mib:.1f} | {other:.2f} cores |"
        )
    swaps = [r for r in rows if r["swap"]]
    if swaps:
        lines += [
            "",
            "Index swap in the middle of the load (a new file renamed over the served one):",
            "",
            "| server | workers | requests | failed | p99 ms | p99 ms, 1 s around the swap "
            "| reloads per worker | old file still mapped, PSS MiB |",
            "|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        for r in swaps:
            lines.append(
                f"| {r['mode']} | {r['workers']} | {r['requests']:,} | {r['failed']} | "
                f"{r['p99_ms']:.2f} | {r['p99_ms_swap_window']:.2f} | "
                f"{'/'.join(map(str, r['reloads_seen']))} | {r['stale_pss']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["client"]:
        client_main(argv[1:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    p.add_argument("--index-dir", type=Path, default=ROOT / "results" / "server-loadtest")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument(
        "--modes",
        nargs="+",
        default=["uvicorn", "gunicorn", "gunicorn-preload-code", "gunicorn-preload"],
        choices=("uvicorn", "gunicorn", "gunicorn-preload", "gunicorn-preload-code"),
    )
    p.add_argument("--concurrency", type=int, default=16, help="keep-alive connections")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--max-requests", type=int, default=500_000, help="per run")
    p.add_argument("--encoding", choices=("b64", "json"), default="b64")
    p.add_argument("--swap", action="store_true", help="add a run with an index swap mid-load")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration (median)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)

    index_path = build(args.dataset, args.index_dir)
    index_mib = index_path.stat().st_size / 2**20
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = [(m, w, False) for m in args.modes for w in args.workers]
        if args.swap:
            plan += [(m, 2, True) for m in args.modes]
        for mode, workers, swap in plan:
            runs = []
            for rep in range(args.repeat):
                print(f"run {rep + 1}/{args.repeat}: {mode} x {workers}"
                      f"{' + swap' if swap else ''}", file=sys.stderr)  # fmt: skip
                runs.append(run_one(mode, workers, args, index_path, swap, Path(tmp)))
                print(json.dumps(runs[-1]), file=sys.stderr)
            runs.sort(key=lambda r: r["rps"])
            row = dict(runs[len(runs) // 2])  # the median run by throughput
            row["rps_range"] = (runs[0]["rps"], runs[-1]["rps"])
            row["failed"] = sum(r["failed"] for r in runs)
            rows.append(row)
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.argv[0]).name, *argv])}")
    print(
        f"index: {index_path.name}, {index_mib:.1f} MiB; recall@10 through the server "
        f"(200 queries): {rows[0]['recall10']:.3f}; {args.concurrency} connections, "
        f"{args.encoding} bodies, k=10, {args.duration:g} s per run"
    )
    print(table(rows, index_mib))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
