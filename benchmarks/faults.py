"""Fault injection (issue 24): what a crash, a damaged file or a bad input does to the studio, measured with real
worker processes on the mini demo world and a real SQLite file, then printed as the table README quotes.

- kill -9 of the worker (and its stage) in the middle of every stage and right after every stage is recorded;
  each time a new worker resumes the job. The resumed run is compared with an uninterrupted one of the same
  seed: the same pairs (prompts, both answers, labels), the same metric series, the same final weights.
- a damaged adapter (one tensor overwritten) and a deleted weights file between stages: the job must fail with
  the file's name; `launch.py doctor` must report the missing file.
- a dead worker whose PID another process now has: the job must be resumed by a live worker.
- 50+ malformed input files through `launch.py import`: refused with the database unchanged.
- path escapes: export folders and import paths outside their folder.
- concurrent labelling: 8 threads writing labels while a round trains; labels lost must be 0.

Run: python benchmarks/faults.py [--rounds 1] (about 10 minutes on two cores)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from benchmarks.harness import (
    enqueue,
    finished,
    integrity_ok,
    kill_tree,
    mini_world,
    run_config,
    start_worker,
    stop,
    wait_for,
)
from storage import Store

RESUMES = "1000"  # the kill series interrupts one job many times: no automatic-resume limit in the way


@dataclass
class Row:
    fault: str
    injected: int
    handled: int
    outcome: str
    notes: list[str] = field(default_factory=list)


def job_state(db: Path, job_id: int):
    store = Store(db)
    try:
        job = store.job(job_id)
        rounds = {r.round: list(r.stages_done) for r in store.rounds(job_id)}
        return job, rounds
    finally:
        store.close()


def outcome_of(db: Path, job_id: int, out_dir: Path) -> dict:
    """What a finished run produced, to compare a resumed run with an uninterrupted one."""
    store = Store(db)
    try:
        pairs = [
            (p.round, p.example_id, p.response_a, p.response_b, p.judge_label, p.label) for p in store.pairs(job_id)
        ]
        metrics = sorted((m.round, m.stage, m.name, m.step) for m in store.metrics(job_id))
        rounds = [r.status for r in store.rounds(job_id)]
    finally:
        store.close()
    weights = sorted((out_dir / "final").glob("*.safetensors"))
    from engine.runtime.checkpoints import sha256_file

    return {"pairs": sorted(pairs), "metrics": metrics, "rounds": rounds, "final": [sha256_file(w) for w in weights]}


# --- kill -9 at every stage boundary and in the middle of every stage ---------------------------------------


def kill_points(config_yaml: str) -> list[tuple[str, int, str]]:
    from engine.config import parse_config
    from engine.runtime.jobs import plan

    return [(when, ref.round, ref.stage) for ref in plan(parse_config(config_yaml)) for when in ("mid", "end")]


def reached(db: Path, job_id: int, when: str, round_index: int, stage: str, since: float):
    def check(job) -> bool:
        if finished(job):
            return True
        _, rounds = job_state(db, job_id)
        if when == "end":
            return stage in rounds.get(round_index, [])
        here = job.status == "running" and job.stage == stage and job.round == round_index
        progressing = job.progress_total > 0 and 0 < job.progress_done < job.progress_total
        return here and (progressing or time.monotonic() - since > 2.0)

    return check


def kill_series(tmp: Path, world, rounds: int) -> tuple[Row, Row]:
    db = tmp / "kill.db"
    ref_out, victim_out = tmp / "reference", tmp / "victim"
    ref_cfg = run_config(world, ref_out, rounds=rounds)
    victim_cfg = run_config(world, victim_out, rounds=rounds)
    reference, victim = enqueue(db, ref_cfg), enqueue(db, victim_cfg)
    worker = start_worker(db, tmp / "worker-ref.log", "--max-auto-resumes", RESUMES)
    wait_for(db, reference, finished, procs=[worker])
    stop(worker)
    kills, where, intact = 0, [], 0
    for n, (when, round_index, stage) in enumerate(kill_points(victim_cfg)):
        worker = start_worker(db, tmp / f"worker-kill-{n}.log", "--max-auto-resumes", RESUMES)
        since = time.monotonic()
        wait_for(
            db,
            victim,
            lambda job: job.status == "running" and job.worker and job.worker.endswith(f":{worker.pid}"),
            procs=[worker],
            timeout=300,
        )
        job = wait_for(db, victim, reached(db, victim, when, round_index, stage, since), procs=[worker])
        if finished(job):
            stop(worker)
            break
        job, _ = job_state(db, victim)
        kill_tree(worker)
        kills += 1
        intact += integrity_ok(db)
        where.append(
            f"{when} r{round_index} {stage} → killed in r{job.round} {job.stage} "
            f"{job.progress_done}/{job.progress_total}"
        )
    worker = start_worker(db, tmp / "worker-final.log", "--max-auto-resumes", RESUMES)
    job = wait_for(db, victim, finished, procs=[worker])
    stop(worker)
    same = outcome_of(db, victim, victim_out) == outcome_of(db, reference, ref_out)
    diffs = [k for k, v in outcome_of(db, victim, victim_out).items() if v != outcome_of(db, reference, ref_out)[k]]
    kill_row = Row(
        "kill -9 of worker and stage, mid-stage and at each stage boundary",
        kills,
        intact,
        f"database intact after {intact} of {kills} kills",
        where,
    )
    resume_row = Row(
        "resumed run identical to an uninterrupted one (pairs, labels, metric series, final weights)",
        1,
        int(job.status == "done" and same),
        f"status {job.status}; " + ("identical" if same else f"differs in {', '.join(diffs)}"),
    )
    return kill_row, resume_row


# --- damaged and missing files ----------------------------------------------------------------------------


def damage(weights: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = torch.zeros_like(tensors[name])
    save_file(tensors, weights, metadata={"format": "pt"})


def damaged_files(tmp: Path, world) -> Row:
    from engine.runtime.doctor import diagnose

    db = tmp / "files.db"
    cases = {
        "damaged adapter (one tensor overwritten)": (damage, "is damaged"),
        "deleted adapter weights": (Path.unlink, "is missing"),
    }
    handled, notes = 0, []
    for k, (name, (harm, expected)) in enumerate(cases.items()):
        out = tmp / f"files-{k}"
        job_id = enqueue(db, run_config(world, out, rounds=1))
        worker = start_worker(db, tmp / f"worker-files-{k}.log")
        wait_for(
            db, job_id, lambda job: finished(job) or "seed" in job_state(db, job_id)[1].get(0, []), procs=[worker]
        )
        kill_tree(worker)
        weights = out / "round_0" / "adapter" / "adapter_model.safetensors"
        harm(weights)
        found = [f.message for f in diagnose(Store(db))] if harm is Path.unlink else []
        worker = start_worker(db, tmp / f"worker-files-{k}-after.log")
        job = wait_for(db, job_id, finished, procs=[worker])
        stop(worker)
        named = job.status == "failed" and str(weights) in job.error and expected in job.error
        doctor_ok = harm is not Path.unlink or any(str(weights) in m and "is missing" in m for m in found)
        handled += named and doctor_ok
        notes.append(
            f"{name}: job {job.status}: {job.error.splitlines()[-1][:160] if job.error else ''}"
            + ("; doctor reports the missing file" if harm is Path.unlink and doctor_ok else "")
        )
    return Row(
        "damaged or missing model file between stages",
        len(cases),
        handled,
        f"{handled} of {len(cases)} failed the stage naming the file",
        notes,
    )


# --- a dead worker's PID reused -----------------------------------------------------------------------------


def pid_reuse(tmp: Path, world) -> Row:
    db = tmp / "pid.db"
    job_id = enqueue(db, run_config(world, tmp / "pid-run", rounds=1))
    squatter = subprocess.Popen(["sleep", "600"])  # the process that now has the dead worker's PID
    store = Store(db)
    store.claim_job(
        f"{socket.gethostname()}:{squatter.pid}",
        squatter.pid,
        job_id,
        started=psutil.Process(squatter.pid).create_time() - 120,
    )
    store.close()
    started = time.monotonic()
    worker = start_worker(db, tmp / "worker-pid.log")
    try:
        wait_for(
            db, job_id, lambda job: job.worker and job.worker.endswith(f":{worker.pid}"), procs=[worker], timeout=120
        )
        took = time.monotonic() - started
        job = wait_for(db, job_id, finished, procs=[worker])
    finally:
        stop(worker)
        squatter.kill()
    ok = job.status == "done"
    return Row(
        "dead worker's PID reused by another process",
        1,
        int(ok),
        f"taken over by a live worker {took:.1f} s after it started; job {job.status}",
    )


# --- malformed inputs ---------------------------------------------------------------------------------------


def extra_inputs(folder: Path) -> list[tuple[str, str]]:
    """Inputs beyond tests/malformed.py's corpus (issue 24): (file name, what is wrong)."""

    def pair(prompt, chosen, rejected):
        return json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n"

    files = {
        "nul_escaped.jsonl": (pair("a\u0000b?", "yes", "no"), "a NUL character in the prompt"),
        "nul_raw.jsonl": ('{"prompt": "a\x00b?", "chosen": "yes", "rejected": "no"}\n', "a raw NUL byte"),
        "surrogate.jsonl": ('{"prompt": "a\\ud800b?", "chosen": "yes", "rejected": "no"}\n', "an unpaired surrogate"),
        "prompt_is_chosen.jsonl": (pair("same text", "same text", "other"), "prompt == chosen"),
        "chosen_is_rejected.jsonl": (pair("Q?", "same answer", "same answer"), "chosen == rejected"),
        "garbage.jsonl": (os.urandom(4096).decode("latin-1"), "random bytes"),
    }
    out = []
    for name, (text, why) in files.items():
        (folder / name).write_bytes(
            text.encode("utf-8", "surrogatepass") if name != "garbage.jsonl" else text.encode("latin-1")
        )
        out.append((name, why))
    os.mkfifo(folder / "fifo.jsonl")
    out.append(("fifo.jsonl", "a FIFO, not a regular file"))
    os.symlink(folder / "loop_b.jsonl", folder / "loop_a.jsonl")
    os.symlink(folder / "loop_a.jsonl", folder / "loop_b.jsonl")
    out.append(("loop_a.jsonl", "a symlink loop"))
    return out


def examples_dump(db: Path) -> list:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("select * from examples order by id").fetchall()
    finally:
        conn.close()


def import_once(db: Path, path: Path, role: str, timeout_s: float = 20) -> tuple[int | None, str]:
    """`launch.py import` in this process (a thread, so a hang is seen): its exit status and output."""
    import launch

    result: dict = {}

    def run():
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                result["code"] = launch.main(
                    ["import", str(path), "--project", "bad", "--role", role, "--db", str(db)]
                )
            except Exception as e:  # an unhandled crash counts as not refused cleanly
                result["code"], result["crash"] = None, f"{type(e).__name__}: {e}"
        result["out"] = out.getvalue()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        if path.is_fifo():
            with open(path, "w"):  # release the reader
                pass
            thread.join(5)
        return None, f"hung for more than {timeout_s:g} s"
    return result.get("code"), result.get("crash") or result.get("out", "")


def malformed_inputs(tmp: Path) -> Row:
    from tests.malformed import write_corpus

    folder = tmp / "malformed"
    cases = [(c.filename, c.role, c.why) for c in write_corpus(folder)]
    cases += [(name, "seed", why) for name, why in extra_inputs(folder)]
    db = tmp / "import.db"
    Store(db).close()
    refused, notes = 0, []
    for name, role, why in cases:
        before = examples_dump(db)
        code, text = import_once(db, folder / name, role)
        unchanged = examples_dump(db) == before
        if code == 2 and unchanged:
            refused += 1
        else:
            notes.append(
                f"{name} ({why}): "
                + ("exit 0, imported" if code == 0 else text.strip()[:120])
                + ("" if unchanged else "; database changed")
            )
    return Row(
        "malformed input files (`launch.py import`)",
        len(cases),
        refused,
        f"{refused} of {len(cases)} refused with the database unchanged",
        notes,
    )


# --- path escapes -------------------------------------------------------------------------------------------


def path_escapes(tmp: Path) -> Row:
    """Crafted export folders (the CLI with --out under a root, and the Export tab's form) and data paths given to
    the API's preview/import: each must be refused after resolution, never land outside its root."""
    from app.actions import ActionError, readable_path
    from app.export_tab import request_for
    from engine.data.export import ExportError
    from engine.data.export.staging import destination

    root = tmp / "exports"
    root.mkdir()
    (root / "link").symlink_to(tmp)
    db = str(tmp / "studio" / "studio.db")
    outs = [
        f"{root}/../escaped",
        f"{root}/a/../../escaped",
        f"{root}/link/escaped",
        "/etc/spa-escaped",
        f"{root}/./../escaped",
        "../escaped",
    ]
    injected, refused, notes = 0, 0, []
    for out in outs:
        for entry in ("CLI", "Export tab"):
            injected += 1
            try:
                req_out = (
                    out
                    if entry == "CLI"
                    else request_for(root, "p", "dataset", "jsonl", None, out, None, False, [], False).out
                )
                target = destination(req_out, str(root))
                notes.append(f"{entry} export to {out!r}: accepted as {target}")
            except ExportError:
                refused += 1
    for path in ("/etc/passwd", f"{tmp}/studio/../../../etc/hostname", f"{root}/link/../../etc/passwd"):
        injected += 1
        try:
            readable_path(db, path)
            notes.append(f"API preview/import of {path!r}: read")
        except ActionError:
            refused += 1
    return Row(
        "path escapes (export folder, import preview)", injected, refused, f"{refused} of {injected} refused", notes
    )


# --- concurrent labelling while a round trains ------------------------------------------------------------------


def concurrent_labels(tmp: Path, world, threads: int = 8, writes: int = 25) -> Row:
    db = tmp / "labels.db"
    job_id = enqueue(
        db,
        run_config(world, tmp / "labels-run", rounds=1, round_epochs=8, batch_size=4, train={"micro_batch_size": 4}),
    )
    worker = start_worker(db, tmp / "worker-labels.log")
    try:
        wait_for(
            db,
            job_id,
            lambda job: finished(job) or (job.stage == "train" and job.round == 1 and job.progress_done > 0),
            procs=[worker],
        )
        store = Store(db)
        ids = [p.id for p in store.pairs(job_id, 1)]
        store.close()
        expected: dict[int, str] = {}
        lock = threading.Lock()
        errors: list[str] = []

        def labeller(k: int) -> None:
            own = ids[k::threads] or ids[:1]
            s = Store(db)
            try:
                for n in range(writes):
                    pair_id, label = own[n % len(own)], "ab"[(n + k) % 2]
                    s.set_label(pair_id, label, "human", actor=f"labeller-{k}")
                    with lock:
                        expected[pair_id] = label
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
            finally:
                s.close()

        during = [threading.Thread(target=labeller, args=(k,)) for k in range(min(threads, len(ids)))]
        for t in during:
            t.start()
        for t in during:
            t.join()
        job = wait_for(db, job_id, finished, procs=[worker])
    finally:
        stop(worker)
    store = Store(db)
    try:
        events = len([e for e in store.label_events() if e.actor.startswith("labeller-")])
        lost = sum(
            store.pair(i).label != label or store.pair(i).label_source != "human" for i, label in expected.items()
        )
    finally:
        store.close()
    written = len(during) * writes
    lost += written - events
    return Row(
        f"concurrent labelling ({len(during)} threads while round 1 trains)",
        written,
        written - lost,
        f"labels lost = {lost}; job {job.status}",
        errors[:3],
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=1, help="rounds of the killed run (each adds 10 kill points)")
    p.add_argument("--only", nargs="*", default=None, help="kill, files, pid, inputs, paths, labels (default: all)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spa-faults-"))
    started = time.monotonic()
    world = mini_world(tmp / "world")
    wanted = set(args.only or ["kill", "files", "pid", "inputs", "paths", "labels"])
    rows: list[Row] = []
    steps = [
        ("inputs", lambda: [malformed_inputs(tmp)]),
        ("paths", lambda: [path_escapes(tmp)]),
        ("pid", lambda: [pid_reuse(tmp, world)]),
        ("files", lambda: [damaged_files(tmp, world)]),
        ("labels", lambda: [concurrent_labels(tmp, world)]),
        ("kill", lambda: list(kill_series(tmp, world, args.rounds))),
    ]
    for name, step in steps:
        if name in wanted:
            rows += step()
            print(f"... {name} done after {time.monotonic() - started:.0f} s", flush=True)
    command = (
        "python benchmarks/faults.py"
        + (f" --rounds {args.rounds}" if args.rounds != 1 else "")
        + (f" --only {' '.join(args.only)}" if args.only else "")
    )
    print(f"\n`{command}`, {(time.monotonic() - started) / 60:.1f} min, scratch {tmp}\n")
    print("| fault | injected | handled | outcome |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row.fault} | {row.injected} | {row.handled} | {row.outcome} |")
    for row in rows:
        if row.notes:
            print(f"\n{row.fault}:")
            print("\n".join(f"- {n}" for n in row.notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
