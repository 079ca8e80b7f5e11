"""Soak benchmark: simulated annotators and reviewers against daphne + PostgreSQL + Redis + Celery.

Each annotator loops: prompt (WebSocket) -> accept (saves a version) -> submit (REST); a reviewer
approves or sends back every submission. Reports p50/p95 latency per action, the error count, and
the resident memory of the server and worker processes over time (goal: flat).

Usage: .venv/bin/python bench/bench_soak.py [--annotators 20] [--minutes 10]
Writes bench/results/soak.md and bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_realtime import DATABASE, ROOT, environment, free_port, percentile  # noqa: E402

RESULTS = ROOT / "bench" / "results"

def rest(base: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body or {}).encode(),
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}


def annotator(base: str, ws_url: str, setup: dict, index: int, seconds: float, queue) -> None:
    import struct

    from websockets.sync.client import connect

    reader = setup["readers"][index]
    timings: dict[str, list[float]] = {"prompt": [], "accept": [], "submit": [], "review": []}
    errors: list[str] = []
    with connect(ws_url, additional_headers={"Cookie": f"sessionid={reader['cookie']}", "Origin": ws_url.replace("ws://", "http://").split("/ws/")[0]},
                 max_size=16 * 2**20, open_timeout=60) as ws:
        def reply(seq=None):
            while True:
                frame = ws.recv(timeout=60)
                if isinstance(frame, bytes):
                    (length,) = struct.unpack("<I", frame[:4])
                    message = json.loads(frame[4:4 + length])
                else:
                    message = json.loads(frame)
                if message["type"] in ("presence", "hello", "queued", "mask.accepted", "notification", "progress"):
                    continue
                if seq is None or message.get("seq") == seq or message["type"] == "error":
                    return message

        ws.send(json.dumps({"type": "session.open", "label": setup["label"], "engine": "threshold"}))
        opened = reply()
        session, seq = opened["session"], max(0, opened.get("latest_seq", 0))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seq += 1
            started = time.perf_counter()
            ws.send(json.dumps({"type": "prompt", "session": session, "seq": seq,
                                "point": {"index": setup["points"][(seq + index) % len(setup["points"])],
                                          "positive": True}}))
            message = reply(seq)
            timings["prompt"].append((time.perf_counter() - started) * 1000)
            if message["type"] != "mask":
                errors.append(f"prompt: {message}")
                continue
            seq += 1
            started = time.perf_counter()
            ws.send(json.dumps({"type": "accept", "session": session, "seq": seq}))
            message = reply(seq)
            timings["accept"].append((time.perf_counter() - started) * 1000)
            if message["type"] != "accepted":
                errors.append(f"accept: {str(message)[:200]}")
                continue
            started = time.perf_counter()
            status, _ = rest(base, reader["token"], "POST",
                             f"/api/projects/{setup['project']}/annotations/{message['annotation']}/submit/")
            timings["submit"].append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(f"submit: {status}")
                continue
            started = time.perf_counter()
            action = "approve" if seq % 4 else "request-changes"
            status, _ = rest(base, setup["reviewer_token"], "POST",
                             f"/api/projects/{setup['project']}/annotations/{message['annotation']}/{action}/",
                             {"comment": "soak test"})
            timings["review"].append((time.perf_counter() - started) * 1000)
            if status not in (200, 201):
                errors.append(f"{action}: {status}")
            time.sleep(1.0)
    queue.put((timings, errors))


def rss_mib(pid: int) -> float:
    total = 0.0
    for candidate in [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                              text=True).stdout.split()]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return round(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    media = Path(tempfile.mkdtemp(prefix="bench-soak-")) / "media"
    env = environment(media)
    for sql in (f"DROP DATABASE IF EXISTS {DATABASE}", f"CREATE DATABASE {DATABASE}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", sql], check=True, capture_output=True)
    subprocess.run(["redis-cli", "-n", "3", "FLUSHDB"], check=True, capture_output=True)
    setup = json.loads(subprocess.run([sys.executable, str(ROOT / "bench" / "seed_world.py"), "soak", "78", str(args.annotators)], env=env, cwd=ROOT,
                                      check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                               "backend.asgi:application"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    # As docker-compose runs them: prompts on a `gpu` worker, statistics on a separate `cpu` worker.
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "gpu", "--pool",
                               "solo", "--hostname", "soak-gpu@localhost", "-l", "warning"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu_worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "cpu", "--pool",
                                   "solo", "--hostname", "soak-cpu@localhost", "-l", "warning"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    memory: list[dict] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            memory.append({"t": round(time.monotonic() - began, 1), "server": rss_mib(server.pid),
                           "worker": rss_mib(worker.pid), "cpu_worker": rss_mib(cpu_worker.pid)})
            stop.wait(10)

    try:
        time.sleep(8)
        began = time.monotonic()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/scans/{setup['scan']}/"
        queue = multiprocessing.Queue()
        processes = [multiprocessing.Process(target=annotator, args=(base, ws_url, setup, i, args.minutes * 60, queue))
                     for i in range(args.annotators)]
        for process in processes:
            process.start()
        timings: dict[str, list[float]] = {}
        errors: list[str] = []
        for _ in processes:
            got, bad = queue.get(timeout=args.minutes * 60 + 300)
            for key, values in got.items():
                timings.setdefault(key, []).extend(values)
            errors += bad
        for process in processes:
            process.join(timeout=30)
        stop.set()
        memory.append({"t": round(time.monotonic() - began, 1), "server": rss_mib(server.pid),
                       "worker": rss_mib(worker.pid), "cpu_worker": rss_mib(cpu_worker.pid)})
    finally:
        server.terminate()
        worker.terminate()
        cpu_worker.terminate()
    warm = memory[min(1, len(memory) - 1)]  # after the first sample: caches are filled
    figures = {"annotators": args.annotators, "minutes": args.minutes, "errors": len(errors), "error_samples": errors[:10],
               "latency_ms": {k: {"n": len(v), "p50": round(percentile(v, 50), 1), "p95": round(percentile(v, 95), 1)}
                              for k, v in timings.items()},
               "memory_mib": {"server_start": warm["server"], "server_end": memory[-1]["server"],
                              "worker_start": warm["worker"], "worker_end": memory[-1]["worker"],
                              "server_max": max(m["server"] for m in memory), "worker_max": max(m["worker"] for m in memory),
                              "cpu_worker_start": warm["cpu_worker"], "cpu_worker_end": memory[-1]["cpu_worker"],
                              "cpu_worker_max": max(m["cpu_worker"] for m in memory)},
               "memory_samples": memory}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    m = figures["memory_mib"]
    lines = ["# Soak benchmark", "",
             f"{args.annotators} simulated annotators for {args.minutes} min (prompt → accept → submit → review, "
             "once a second each) against daphne + PostgreSQL + Redis + Celery (one `gpu` and one `cpu` worker, "
             "as docker-compose runs them) on this machine (2 cores).", "",
             "| action | count | p50 ms | p95 ms |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['p50']} | {v['p95']} |" for k, v in figures["latency_ms"].items()]
    lines += ["", f"Errors: **{len(errors)}** (goal 0).", "",
              "| process | RSS after warm-up (MiB) | RSS at end (MiB) | max (MiB) |", "|---|---|---|---|",
              f"| daphne | {m['server_start']} | {m['server_end']} | {m['server_max']} |",
              f"| celery worker (gpu queue) | {m['worker_start']} | {m['worker_end']} | {m['worker_max']} |",
              f"| celery worker (cpu queue) | {m['cpu_worker_start']} | {m['cpu_worker_end']} | {m['cpu_worker_max']} |", ""]
    (RESULTS / "soak.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
