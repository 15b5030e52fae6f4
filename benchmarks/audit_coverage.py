"""Does the blind audit's 95% interval cover the self-judge's true accuracy? Short SPA runs on the demo world, each
round's audit sample answered by gold as a person would (benchmarks.inline.human_corrections with audit=True); per
round the audit's estimate (engine.method.agreement.audit_estimate over Store.audit_answers) beside the true
self-label accuracy on every pair of the round that gold decides.

    python benchmarks/audit_coverage.py                       # 10 runs of 2 rounds (~1-2 min each on 2 CPU cores)
    python benchmarks/audit_coverage.py --world mini --runs 2 --out /tmp/audit.md   # a tiny check
    python benchmarks/audit_coverage.py --from-runs runs/t42/auto/table.db runs/t43/auto/table.db \
        --out benchmarks/results/audit_coverage_text.md       # finished runs whose audit was answered (text world)

--from-runs reads finished runs instead of running any: the last finished run of each database (e.g. the rows
benchmarks/text_table.py --keep-runs leaves; its `auto` row answers every round's audit by gold).

Two coverage figures: the stage's own sample of each round (one interval per run and round), and, on the same
judged pairs, `--draws` fresh uniform samples of the same size answered by gold (many intervals per round, no
training: how often a person who audited that round would have been covered). Wilson assumes an infinite
population; a sample of 20 from a round of a few hundred pairs makes it slightly conservative.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.inline import AfterStage, gold_answer, human_corrections, run_inline, with_overrides
from engine.config import RunConfig, load_config
from engine.method.agreement import agreement, audit_estimate, audit_sample
from engine.runtime.context import StageContext
from storage import Pair, Store

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


@dataclass
class AuditCheck:
    """One round of one run: the audit's estimate from its blind answers beside the truth on every decided pair."""

    run_seed: int
    round: int
    agree: float | None
    lo: float
    hi: float
    n: int  # decided audit answers
    ties: int
    both_bad: int
    true_accuracy: float | None  # the judge against gold on every pair of the round gold decides
    decided: int  # those pairs
    covered: bool | None  # lo ≤ true accuracy ≤ hi; None without a decided answer or a decided pair
    resampled_covered: int = 0  # of `resampled` fresh audit samples of the same round, how many covered it
    resampled: int = 0


def decided_pairs(pairs: list[Pair]) -> list[Pair]:
    """The pairs the judge labelled a or b and gold prefers one answer of."""
    return [
        p
        for p in pairs
        if p.judge_label in ("a", "b") and p.gold_a is not None and p.gold_b is not None and p.gold_a != p.gold_b
    ]


def true_accuracy(pairs: list[Pair]) -> float | None:
    """How often the judge's label (not the label in force: people may have changed that since) matches gold."""
    decided = decided_pairs(pairs)
    return sum(p.judge_label == gold_answer(p) for p in decided) / len(decided) if decided else None


def audit_vs_truth(store: Store, job_id: int, round_index: int, run_seed: int = 0) -> AuditCheck:
    """The round's audit estimate from its blind answers and the true accuracy on all its decided pairs."""
    estimate = audit_estimate(store.audit_answers(job_id, round_index))
    pairs = store.pairs(job_id, round_index)
    truth = true_accuracy(pairs)
    covered = None if truth is None or estimate.n == 0 else estimate.lo <= truth <= estimate.hi
    return AuditCheck(
        run_seed=run_seed,
        round=round_index,
        agree=estimate.agree,
        lo=estimate.lo,
        hi=estimate.hi,
        n=estimate.n,
        ties=estimate.ties,
        both_bad=estimate.both_bad,
        true_accuracy=truth,
        decided=len(decided_pairs(pairs)),
        covered=covered,
    )


def resampled_coverage(pairs: list[Pair], size: int, draws: int, seed: int) -> tuple[int, int]:
    """(covered, intervals): fresh uniform audit samples of `size` of the judged pairs, answered by gold."""
    truth = true_accuracy(pairs)
    judged = {p.id: p for p in pairs if p.judge_label in ("a", "b") and p.gold_a is not None and p.gold_b is not None}
    if truth is None or not judged:
        return 0, 0
    covered = intervals = 0
    for draw in range(draws):
        sample = [judged[i] for i in audit_sample(judged, size, seed * 100_003 + draw)]
        estimate = agreement([gold_answer(p) for p in sample], [p.judge_label for p in sample])
        if estimate.n:
            intervals += 1
            covered += estimate.lo <= truth <= estimate.hi
    return covered, intervals


def fill_gold(ctx: StageContext) -> None:
    """After a generate stage of a run on a demo world named by its folder (the mini world: `demo:` paths name the
    full one), store the demo task's gold reward beside each pair, as the stage does for `demo:` runs."""
    from engine.worlds.demo_task import gold_score_messages

    if ctx.stage != "generate":
        return
    pairs = [p for p in ctx.store.pairs(ctx.job_id, ctx.round) if p.gold_a is None]
    ctx.store.update_pairs(
        {
            p.id: {
                "gold_a": gold_score_messages(p.prompt, p.response_a),
                "gold_b": gold_score_messages(p.prompt, p.response_b),
            }
            for p in pairs
        }
    )


def audit_reviewer(seed: int, gold: bool) -> AfterStage:
    """The simulated reviewer who answers each round's audit by gold, after `fill_gold` when `gold`."""
    reviewer = human_corrections(0, "random", seed, audit=True)

    def after(ctx: StageContext) -> None:
        if gold:
            fill_gold(ctx)
        reviewer(ctx)

    return after


def run_once(base: RunConfig, seed: int, draws: int, gold: bool = False) -> list[AuditCheck]:
    """One short run whose reviewer answers each round's audit by gold; its rounds' checks. gold: the run names
    its world by folder, so fill_gold stores gold beside its pairs."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(base, seed=seed, output_dir=str(Path(tmp) / "out"))
        run = run_inline(cfg, Path(tmp) / "audit.db", audit_reviewer(seed, gold))
        checks = []
        for round_index in range(1, cfg.rounds + 1):
            check = audit_vs_truth(run.store, run.job_id, round_index, seed)
            pairs = run.store.pairs(run.job_id, round_index)
            check.resampled_covered, check.resampled = resampled_coverage(pairs, cfg.audit_size, draws, seed)
            checks.append(check)
        run.store.close()
    return checks


def kept_runs(dbs: list[str], draws: int) -> tuple[list[AuditCheck], RunConfig]:
    """The checks of the last finished run in each database, and the first run's configuration."""
    from engine.config import parse_config

    checks, first = [], None
    for db in dbs:
        store = Store(db)
        jobs = [j for j in store.jobs(statuses=("done",)) if j.kind == "run"]
        if not jobs:
            raise SystemExit(f"{db}: no finished run")
        cfg = parse_config(jobs[-1].config_yaml, f"{db} job {jobs[-1].id}")
        first = first or cfg
        for round_index in range(1, cfg.rounds + 1):
            check = audit_vs_truth(store, jobs[-1].id, round_index, cfg.seed)
            pairs = store.pairs(jobs[-1].id, round_index)
            check.resampled_covered, check.resampled = resampled_coverage(pairs, cfg.audit_size, draws, cfg.seed)
            checks.append(check)
        store.close()
    return checks, first


def share(covered: int, total: int) -> str:
    return f"{covered}/{total} = {covered / total:.2f}" if total else "–"


def render(checks: list[AuditCheck], args, base: RunConfig, seconds: float, world: str) -> str:
    own = [c for c in checks if c.covered is not None]
    resampled = sum(c.resampled for c in checks)
    own_covered = sum(c.covered for c in own)
    lines = [
        "# The blind audit's 95% interval against the true self-label accuracy",
        "",
        f"`{shlex.join(['python', 'benchmarks/audit_coverage.py', *args.argv])}`",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d}, {platform.processor() or platform.machine()}, "
        f"{len({c.run_seed for c in checks})} runs on the {args.world} world ({world}), {base.rounds} rounds of "
        f"{base.prompts_per_round} prompts, audit of {base.audit_size} pairs per round answered by gold, "
        f"{seconds / 60:.0f} min.",
        "",
        f"- **The stage's own samples:** the interval covered the true accuracy in {share(own_covered, len(own))} "
        "rounds.",
        f"- **Fresh samples of the same rounds** ({args.draws} per round): "
        f"{share(sum(c.resampled_covered for c in checks), resampled)}.",
        f"- Mean interval width {statistics.mean(c.hi - c.lo for c in own):.2f}; rounds whose interval includes 0.5: "
        f"{sum(c.lo <= 0.5 <= c.hi for c in own)} of {len(own)}; rounds whose true accuracy is within 0.05 of 0.5: "
        f"{sum(abs(c.true_accuracy - 0.5) <= 0.05 for c in own)}."
        if own
        else "- No round had a decided audit answer.",
        "",
        "| run seed | round | audit agree | 95% interval | n (tie, both bad) | true accuracy | decided pairs "
        "| covered | fresh samples covered |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in checks:
        agree = "–" if c.agree is None else f"{c.agree:.3f}"
        truth = "–" if c.true_accuracy is None else f"{c.true_accuracy:.3f}"
        covered = {True: "yes", False: "**no**", None: "–"}[c.covered]
        lines.append(
            f"| {c.run_seed} | {c.round} | {agree} | {c.lo:.3f}–{c.hi:.3f} | {c.n} ({c.ties}, {c.both_bad}) | "
            f"{truth} | {c.decided} | {covered} | {share(c.resampled_covered, c.resampled)} |"
        )
    return "\n".join(lines) + "\n"


def world_config(name: str, scratch: Path) -> tuple[RunConfig, str]:
    """The demo world's configuration, shortened to 2 rounds (the full world), or the tests' mini world, named by
    its folder (fill_gold adds its gold)."""
    from engine.worlds.demo_world import WorldSize, build_demo_world

    if name == "mini":
        from benchmarks.harness import run_config
        from engine.config import parse_config

        world = build_demo_world(scratch / "mini", size=WorldSize.mini(), progress=lambda *a: None)
        return parse_config(run_config(world, scratch / "out", rounds=2, prompts_per_round=[24, 24])), "mini"
    world = build_demo_world()
    cfg = with_overrides(
        load_config(REPO / "configs" / "demo.yaml"),
        rounds=2,
        prompts_per_round=[320, 320],
        eval__max_prompts=32,
        eval_data="demo:validation.jsonl",
    )
    return cfg, world.fingerprint()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", choices=["demo", "mini"], default="demo")
    p.add_argument("--runs", type=int, default=10, help="runs, seeds 0..runs-1")
    p.add_argument("--audit-size", type=int, default=20)
    p.add_argument("--draws", type=int, default=200, help="fresh audit samples per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "audit_coverage.md"))
    p.add_argument("--from-runs", nargs="+", metavar="DB", help="read these finished runs instead of running")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    import torch

    torch.set_num_threads(args.threads)
    started = time.monotonic()
    if args.from_runs:
        checks, base = kept_runs(args.from_runs, args.draws)
        args.world = "text" if base.model.startswith("text:") else "given"
        text = render(checks, args, base, time.monotonic() - started, "kept runs")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            checks, base, world = run_all(args, Path(tmp))
            text = render(checks, args, base, time.monotonic() - started, world)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps([asdict(c) for c in checks], indent=1))
    return 0


def run_all(args, scratch: Path) -> tuple[list[AuditCheck], RunConfig, str]:
    """Every run of the study, printing each as it ends."""
    base, world = world_config(args.world, scratch)
    base = with_overrides(base, audit_size=args.audit_size)
    checks: list[AuditCheck] = []
    for seed in range(args.runs):
        run_started = time.monotonic()
        ran = run_once(base, seed, args.draws, gold=args.world == "mini")
        checks += ran
        rounds = "; ".join(
            f"round {c.round} audit {c.agree} [{c.lo:.2f}, {c.hi:.2f}] n {c.n}, truth {c.true_accuracy}" for c in ran
        )
        print(f"seed {seed}: {rounds} ({time.monotonic() - run_started:.0f}s)", flush=True)
    return checks, base, world


if __name__ == "__main__":
    sys.exit(main())
