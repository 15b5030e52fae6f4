"""The studio under load (issues 24 and 38): 2, 4 and 8 named people, each signed in with an account of their own
(the studio runs with one --auth per person), read review pages, label their own share of a round's pairs and undo
their own last label now and then, through the studio's API, while a worker trains a round on the same database.
For 2 people the same again in Chromium, through the Review tab's keys (--browser).

Reports per call kind the p50/p95 latency, the studio's own CPU per call (its process's CPU time over the phase,
divided by the calls), labels lost (every label a person wrote and did not undo must be the pair's label at the
end, with one audit event per call: must be 0) and undos that crossed people (an undo event whose actor is not
the actor of the event it reverts, or an undo that reverted a pair the person did not label last: must be 0).
The machine's load average is printed beside the figures: on 2 cores, the clients share them with the studio.

Each person is a process of their own, as each person's browser or script is: gradio_client spends about
0.1 s of CPU per call, so eight people as threads of one process would measure their own GIL.

Run: python benchmarks/load.py [--people 2 4 8] [--writes 20] [--browser] [--round-epochs 60]"""

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
from benchmarks.load_tally import (
    KINDS,
    UNDO_EVERY,
    Phase,
    Tally,
    accounts,
    auth_args,
    check,
    pair_states,
    percentile,
    signed_in,
    timed,
)
from storage import Store


def person(url: str, name: str, password: str, project: str, own: list[int], writes: int, k: int, start=None) -> Tally:
    """One person: read a page of the queue, label one of their pairs; every UNDO_EVERY-th label, undo it at once.
    `start`: a barrier all people pass once signed in, so their calls overlap."""
    tally = Tally()
    client = signed_in(url, name, password, tally)
    if start is not None:
        start.wait()
    if client is None:
        return tally
    cpu = time.process_time()
    for n in range(writes):
        try:
            timed(tally, "page", lambda: client.predict(project, n % 3, 20, api_name="/review_page"))
            pair_id, label = own[n % len(own)], "ab"[(n + k) % 2]
            timed(tally, "label", lambda: client.predict(pair_id, label, api_name="/set_label"))
            tally.labels += 1
            tally.kept.append((pair_id, label))
            if n % UNDO_EVERY == UNDO_EVERY - 1:
                undone = timed(tally, "undo", lambda: client.predict(project, api_name="/undo_last_label"))
                tally.undos += 1
                tally.crossed += undone["pairs"] != [pair_id]
                tally.kept.pop()
        except Exception as e:  # counted, not hidden: a failed write is a lost label
            tally.errors.append(f"{name}: {type(e).__name__}: {str(e)[:120]}")
    tally.cpu_s = time.process_time() - cpu
    return tally


def _person_process(results, *args) -> None:
    results.put(person(*args))


def people_in_processes(url: str, project: str, ids: list[int], people: list[tuple[str, str]], writes: int) -> Tally:
    """Each person a process, started together, with pairs of their own (ids dealt out in turn); results merged."""
    n = len(people)
    ctx = multiprocessing.get_context("spawn")
    results, start = ctx.Queue(), ctx.Barrier(n, timeout=300)
    procs = [
        ctx.Process(target=_person_process, args=(results, url, name, pw, project, ids[k::n], writes, k, start))
        for k, (name, pw) in enumerate(people)
    ]
    for p in procs:
        p.start()
    out = Tally()
    for _ in procs:
        out.add(results.get(timeout=3600))
    for p in procs:
        p.join()
    return out


def api_phase(url: str, db: Path, ids: list[int], people: list[tuple[str, str]], writes: int, studio) -> Phase:
    before, first_event = pair_states(db, ids)
    load, cpu, t = os.getloadavg(), sum(studio.cpu_times()[:2]), time.monotonic()
    tally = people_in_processes(url, "bench", ids, people, writes)
    seconds, studio_cpu = time.monotonic() - t, sum(studio.cpu_times()[:2]) - cpu
    calls = sum(len(v) for v in tally.ms.values())
    done = check(db, before, first_event, tally, tally.labels + tally.undos)
    who = f"{len(people)} people" if len(people) > 1 else "1 person"
    return Phase(f"{who}, API", len(people), seconds, load, tally, done, studio_cpu, calls)


def training(db: Path, job_id: int) -> bool:
    store = Store(db)
    try:
        job = store.job(job_id)
        return job.status == "running" and job.stage == "train" and job.round == 1
    finally:
        store.close()


def during_training(db: Path, job_id: int, run) -> Phase:
    """A phase, noting whether round 1 trained at its start and at its end."""
    at_start = training(db, job_id)
    phase = run()
    at_end = training(db, job_id)
    phase.training = "throughout" if at_start and at_end else ("until part-way" if at_start else "no")
    return phase


def table(phases: list[Phase]) -> list[str]:
    lines = [
        "| people | via | call | n | p50 ms | p95 ms | max ms | studio CPU ms/call | load avg (1 min) | round 1 "
        "training | labels lost | undos crossing people |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ph in phases:
        via = ph.name.split(", ")[1]
        cpu = f"{1000 * ph.studio_cpu_s / max(ph.calls, 1):.0f}"
        crossed = ph.check.crossed + ph.tally.crossed
        for kind in KINDS:
            v = ph.tally.ms[kind]
            if not v:
                continue
            lines.append(
                f"| {ph.people} | {via} | {kind} | {len(v)} | {statistics.median(v):.0f} | {percentile(v, 0.95):.0f} "
                f"| {max(v):.0f} | {cpu} | {ph.load[0]:.1f} | {ph.training} | {ph.check.lost} | {crossed} |"
            )
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--people", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--writes", type=int, default=20, help="page reads and labels per person")
    p.add_argument("--browser", action="store_true", help="also 2 people in Chromium (benchmarks/load_browser.py)")
    p.add_argument("--round-epochs", type=int, default=60, help="how long round 1 trains under the load")
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
            round_epochs=args.round_epochs,
            batch_size=4,
            train={"micro_batch_size": 4},
        ),
    )
    people = accounts(max(args.people + ([2] if args.browser else [])))
    worker = start_worker(db, tmp / "worker.log")
    studio = start(["--db", str(db), "--port", str(port), "--no-worker", *auth_args(people)], tmp / "studio.log")
    phases: list[Phase] = []
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
        studio_process = psutil.Process(studio.pid)
        phases.append(  # the baseline: one person
            during_training(db, job_id, lambda: api_phase(url, db, ids[:1], people[:1], 10, studio_process))
        )
        for n in args.people:
            phases.append(
                during_training(db, job_id, lambda: api_phase(url, db, ids, people[:n], args.writes, studio_process))
            )
        if args.browser:
            from benchmarks.load_browser import browser_phase

            phases.append(
                during_training(db, job_id, lambda: browser_phase(url, db, people[:2], args.writes, studio_process))
            )
        store = Store(db)
        store.request_stop(job_id)  # the load is measured: the rest of the training would only heat the machine
        store.close()
        job = wait_for(db, job_id, finished, procs=[worker], timeout=600)
    finally:
        stop(studio)
        stop(worker)
    shown = " ".join(str(n) for n in args.people)
    flags = f"{' --browser' if args.browser else ''} --round-epochs {args.round_epochs}"
    print(
        f"`python benchmarks/load.py --people {shown} --writes {args.writes}{flags}`, "
        f"{(time.monotonic() - started) / 60:.1f} min, {os.cpu_count()} cores; round 1 trains ({args.round_epochs} "
        f"epochs) while the phases run, one after the other; job {job.status}; load average at the end "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    print("\n".join(table(phases)))
    print()
    for ph in phases:
        errors = ph.tally.errors
        print(
            f"- {ph.name}: {ph.seconds:.0f} s, {ph.tally.labels} labels and {ph.tally.undos} undos, "
            f"{ph.check.events} audit events, labels lost {ph.check.lost}, undos crossing people "
            f"{ph.check.crossed + ph.tally.crossed}; studio CPU {ph.studio_cpu_s:.1f} s, "
            + ("Chromium's CPU not counted" if "Chromium" in ph.name else f"clients' CPU {ph.tally.cpu_s:.1f} s")
            + (f"; errors: {errors[:3]}" if errors else "")
        )
    bad = sum(ph.check.lost + ph.check.crossed + ph.tally.crossed + len(ph.tally.errors) for ph in phases)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
