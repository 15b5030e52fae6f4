"""The studio under load (issue 24): 8 concurrent gradio_client sessions read review pages and write labels
through the studio's API while a worker trains a round on the same database. Reports p50/p95 latency of the
review page and of a label write, and labels lost (every label written must be the pair's label at the end,
with one audit event each).

Each session is a process of its own, as each person's browser or script is: gradio_client spends about
0.1 s of CPU per call, so eight sessions as threads of one process would measure their own GIL. The CPU the
studio and the sessions spent is printed beside the latencies.

Run: python benchmarks/load.py [--sessions 8] [--writes 30]"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.harness import (
    enqueue,
    finished,
    free_port,
    mini_world,
    run_config,
    start,
    start_worker,
    stop,
    wait_for,
    wait_listening,
)
from storage import Store


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def session(url: str, project: str, own: list[int], writes: int, k: int, start=None) -> dict:
    """One person: read a page of the queue, label one of their pairs, again and again. `start`: a barrier all
    sessions pass once connected, so their calls overlap."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    if start is not None:
        start.wait()
    pages, labels, written, errors = [], [], {}, []
    cpu = time.process_time()
    for n in range(writes):
        try:
            t = time.perf_counter()
            client.predict(project, n % 3, 20, api_name="/review_page")
            pages.append(time.perf_counter() - t)
            pair_id, label = own[n % len(own)], "ab"[(n + k) % 2]
            t = time.perf_counter()
            client.predict(pair_id, label, api_name="/set_label")
            labels.append(time.perf_counter() - t)
            written[pair_id] = label
        except Exception as e:  # counted, not hidden: a failed write is a lost label
            errors.append(f"{type(e).__name__}: {str(e)[:120]}")
    return {
        "pages": pages,
        "labels": labels,
        "expected": written,
        "writes": len(labels),
        "errors": errors,
        "cpu_s": time.process_time() - cpu,
    }


def _session_process(results, *args) -> None:
    results.put(session(*args))


def sessions_in_processes(url: str, project: str, ids: list[int], n: int, writes: int) -> dict:
    """`n` sessions, one process each, started together; their results merged."""
    ctx = multiprocessing.get_context("spawn")
    results, start = ctx.Queue(), ctx.Barrier(n, timeout=300)
    procs = [
        ctx.Process(target=_session_process, args=(results, url, project, ids[k::n] or ids[:1], writes, k, start))
        for k in range(n)
    ]
    for p in procs:
        p.start()
    out = {"pages": [], "labels": [], "expected": {}, "writes": 0, "errors": [], "cpu_s": 0.0}
    for _ in procs:
        got = results.get(timeout=3600)
        for key in ("pages", "labels", "errors"):
            out[key] += got[key]
        out["expected"].update(got["expected"])
        out["writes"] += got["writes"]
        out["cpu_s"] += got["cpu_s"]
    for p in procs:
        p.join()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--writes", type=int, default=30, help="page reads and label writes per session")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spa-load-"))
    started = time.monotonic()
    world = mini_world(tmp / "world")
    db, port = tmp / "load.db", free_port()
    job_id = enqueue(
        db,
        run_config(
            world,
            tmp / "run",
            rounds=1,
            prompts_per_round=[40],
            round_epochs=30,
            batch_size=4,
            train={"micro_batch_size": 4},
        ),
    )
    worker = start_worker(db, tmp / "worker.log")
    studio = start(["--db", str(db), "--port", str(port), "--no-worker"], tmp / "studio.log")
    try:
        wait_listening(port)
        wait_for(
            db,
            job_id,
            lambda job: finished(job) or (job.stage == "train" and job.round == 1 and job.progress_done > 0),
            procs=[worker],
        )
        store = Store(db)
        ids = [pair.id for pair in store.pairs(job_id, 1)]
        store.close()
        url = f"http://127.0.0.1:{port}/"
        alone = session(url, "bench", ids[:1], 10, 0)  # the baseline: one session
        studio_cpu = psutil.Process(studio.pid)
        load_before = os.getloadavg()
        cpu_before = sum(studio_cpu.cpu_times()[:2])
        load_from = time.monotonic()
        out = sessions_in_processes(url, "bench", ids, args.sessions, args.writes)
        load_s = time.monotonic() - load_from
        studio_cpu_s = sum(studio_cpu.cpu_times()[:2]) - cpu_before
        out["expected"] = {**alone["expected"], **out["expected"]}
        still_training = Store(db).job(job_id).stage == "train"
        job = wait_for(db, job_id, finished, procs=[worker], timeout=900)
    finally:
        stop(studio)
        stop(worker)
    store = Store(db)
    events = len([e for e in store.label_events() if e.actor == "api"]) - alone["writes"]
    lost = sum(
        store.pair(i).label != label or store.pair(i).label_source != "human" for i, label in out["expected"].items()
    )
    store.close()
    attempted = args.sessions * args.writes
    lost += attempted - events
    ms = {k: [v * 1000 for v in out[k]] for k in ("pages", "labels")}
    print(
        f"`python benchmarks/load.py --sessions {args.sessions} --writes {args.writes}`, "
        f"{(time.monotonic() - started) / 60:.1f} min; {args.sessions} sessions for {load_s:.0f} s while round 1 "
        f"trained ({'still training at the end' if still_training else 'training ended during the load'}); "
        f"job {job.status}\n"
    )
    base = {k: [v * 1000 for v in alone[k]] for k in ("pages", "labels")}
    calls = 2 * max(out["writes"], 1)
    print(
        f"load average {load_before[0]:.1f} when the sessions started ({os.cpu_count()} cores); CPU per call: "
        f"studio {1000 * studio_cpu_s / calls:.0f} ms, gradio_client {1000 * out['cpu_s'] / calls:.0f} ms\n"
    )
    print("| request | n | p50 ms | p95 ms | max ms | one session alone: p50 ms | p50 ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, key in (("review page (20 pairs)", "pages"), ("label write", "labels")):
        v = ms[key]
        print(
            f"| {name} | {len(v)} | {statistics.median(v):.0f} | {percentile(v, 0.95):.0f} | {max(v):.0f} | "
            f"{statistics.median(base[key]):.0f} | {statistics.median(v) / statistics.median(base[key]):.1f}× |"
        )
    print(
        f"\nlabels written {attempted}, audit events {events}, labels lost = {lost}"
        + (f"; errors: {out['errors'][:3]}" if out["errors"] else "")
    )
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
