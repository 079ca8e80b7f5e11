"""Real-time load benchmark: N browsers (WebSocket clients in separate processes) each send one
prompt per second against daphne + Redis + one Celery worker + PostgreSQL, threshold engine.

Reports round trip (prompt sent -> mask frame received) p50/p95/p99 and the overhead over the
engine's own time, for N = 1, 5, 20, and counts lost or misrouted replies.

Usage: .venv/bin/python bench/bench_realtime.py [--seconds 60] [--clients 1 5 20]
Needs PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379).
Writes bench/results/realtime.md and bench/results/realtime.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATABASE = "seganypet_bench"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(media: Path) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings", "DEBUG": "false",
            "SECRET_KEY": "bench-secret-key-long-enough-for-production-checks-0123456789",
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
            "REDIS_URL": "redis://127.0.0.1:6379/3", "MEDIA_ROOT": str(media), "DATA_DIR": str(media.parent),
            "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", "SESSION_COOKIE_SECURE": "false"}


def client_process(url: str, cookie: str, label: int, points: list, seconds: float, queue) -> None:
    from websockets.sync.client import connect

    records, problems = [], []
    with connect(url, additional_headers={"Cookie": f"sessionid={cookie}", "Origin": url.replace("ws://", "http://").split("/ws/")[0]},
                 max_size=16 * 2**20, open_timeout=30) as ws:
        def next_message(timeout: float = 30, seq: int | None = None):
            """The next reply; with `seq`, the mask frame of that seq (earlier frames are stale)."""
            while True:
                message = _next(timeout)
                if seq is None or message.get("seq") == seq or message.get("type") == "error":
                    return message

        def _next(timeout: float):
            while True:
                frame = ws.recv(timeout=timeout)
                if isinstance(frame, bytes):
                    (length,) = struct.unpack("<I", frame[:4])
                    return json.loads(frame[4:4 + length])
                message = json.loads(frame)
                if message["type"] not in ("presence", "hello", "queued", "mask.accepted", "notification"):
                    return message

        ws.send(json.dumps({"type": "session.open", "label": label, "engine": "threshold"}))
        opened = next_message()
        session = opened["session"]
        # A resumed session (same reader as the warm-up) continues its own sequence numbers.
        deadline, seq = time.monotonic() + seconds, max(0, opened.get("latest_seq", 0))
        while time.monotonic() < deadline:
            seq += 1
            tick = time.monotonic()
            ws.send(json.dumps({"type": "reset", "session": session, "seq": seq}))
            next_message(seq=seq)
            seq += 1
            sent = time.perf_counter()
            ws.send(json.dumps({"type": "prompt", "session": session, "seq": seq,
                                "point": {"index": points[seq % len(points)], "positive": True}}))
            try:
                reply = next_message()
            except TimeoutError:
                problems.append(f"lost reply to seq {seq}")
                reply = None
            rtt = (time.perf_counter() - sent) * 1000
            if reply is not None and (reply.get("type") != "mask" or reply.get("session") != session
                                      or reply.get("seq") != seq):
                problems.append(f"misrouted or failed reply {str(reply)[:120]} for seq {seq}")
            elif reply is not None:
                records.append((rtt, float(reply["timings"]["engine"]), float(reply["timings"]["queue"]),
                                float(reply["timings"]["setup"])))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    queue.put((records, problems))


def run_round(url: str, setup: dict, n: int, seconds: float) -> dict:
    queue = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=client_process, args=(url, setup["readers"][i]["cookie"], setup["label"],
                                                                      setup["points"], seconds, queue))
                 for i in range(n)]
    for process in processes:
        process.start()
    records, problems = [], []
    for _ in processes:
        got, bad = queue.get(timeout=seconds + 120)
        records += got
        problems += bad
    for process in processes:
        process.join(timeout=30)
    rtts = [r[0] for r in records]
    overheads = [r[0] - r[1] for r in records]
    return {"clients": n, "prompts": len(records), "lost_or_misrouted": len(problems), "problems": problems[:5],
            "rtt_ms": {q: round(percentile(rtts, q), 1) for q in (50, 95, 99)},
            "overhead_ms": {q: round(percentile(overheads, q), 1) for q in (50, 95, 99)},
            "engine_ms_p50": round(statistics.median([r[1] for r in records]), 1) if records else None,
            # where the overhead goes: consumer->worker queue hop, and the worker's whole handling
            "queue_ms_p50": round(statistics.median([r[2] for r in records]), 1) if records else None,
            "worker_setup_ms_p50": round(statistics.median([r[3] for r in records]), 1) if records else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 5, 20])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-"))
    media = work / "media"
    env = environment(media)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP DATABASE IF EXISTS {DATABASE}"],
                   check=True, capture_output=True)
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {DATABASE}"],
                   check=True, capture_output=True)
    subprocess.run(["redis-cli", "-n", "3", "FLUSHDB"], check=True, capture_output=True)
    setup = json.loads(subprocess.run([sys.executable, str(ROOT / "bench" / "seed_world.py"), "bench", "77", str(max(args.clients))], env=env, cwd=ROOT,
                                      check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                               "backend.asgi:application"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "gpu,cpu",
                               "--pool", "solo", "--hostname", "bench@localhost", "-l", "warning"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)
        url = f"ws://127.0.0.1:{port}/ws/scans/{setup['scan']}/"
        warm_up = {**setup, "readers": setup["readers"][::-1]}  # a reader the measured rounds start with last
        run_round(url, warm_up, 1, 5)  # loads the volume into the worker's cache
        rounds = [run_round(url, setup, n, args.seconds) for n in args.clients]
    finally:
        server.terminate()
        worker.terminate()
        server.wait(timeout=30)
        worker.wait(timeout=30)
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = {"seconds_per_round": args.seconds, "engine": "threshold", "volume": "200x128x128 phantom",
               "machine": f"{os.cpu_count()} cores", "rounds": rounds}
    (RESULTS / "realtime.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = ["# Real-time prompting benchmark", "",
             f"daphne + Redis + 1 Celery worker (solo) + PostgreSQL on this machine ({figures['machine']}); "
             f"threshold engine; each client sends one prompt per second for {args.seconds:.0f} s.",
             "Round trip = prompt sent to mask frame received; overhead = round trip minus the engine's own time.",
             "All times in ms.", "",
             "| clients | prompts | RTT p50 | RTT p95 | RTT p99 | overhead p50 | overhead p95 | engine p50 | queue hop p50 | worker setup p50 | lost/misrouted |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rounds:
        lines.append(f"| {r['clients']} | {r['prompts']} | {r['rtt_ms'][50]} | {r['rtt_ms'][95]} | {r['rtt_ms'][99]} | "
                     f"{r['overhead_ms'][50]} | {r['overhead_ms'][95]} | {r['engine_ms_p50']} | {r['queue_ms_p50']} | "
                     f"{r['worker_setup_ms_p50']} | {r['lost_or_misrouted']} |")
    lines += ["", "Goals: overhead p50 ≤ 25 ms at N=1; N=20 RTT p95 ≤ 300 ms; zero lost or misrouted replies.", ""]
    (RESULTS / "realtime.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
