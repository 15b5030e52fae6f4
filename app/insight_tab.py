"""Insight tab: per-round metrics, the self-judge's calibration (confidence vs agreement with gold and human
labels), the blind audit, how often people agree (agreement_view), the margin histogram, chosen vs rejected length
per round (length bias), and stored generations.

Nothing here samples from a model: the generations shown are the ones already stored (the pairs of each
round, and π_init's answers to the eval prompts when the run saved them)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from app import actions, agreement_view, plots
from app.actions import ActionError
from engine.runtime.jobs import RUN

ALL_RUNS = "all runs"
HEIGHT = 260


def _job_id(value) -> int | None:
    return None if value in (None, "", ALL_RUNS) else int(value)


def init_samples(db: str, project: str, job_id: int | None, limit: int = 10) -> pd.DataFrame:
    """π_init's stored answers to the eval prompts (eval_init_samples.json in the run's folder), if any."""
    columns = ["eval prompt", "π_init answer"]
    rows = actions.init_answers(db, job_id, limit) if job_id is not None else []
    return pd.DataFrame(rows, columns=columns)


def _scored(text: str, gold: float | None = None, judge: float | None = None, init_judge: float | None = None) -> str:
    """An answer with its scores after it: gold, and the round's judge score of it and of π_init's answer."""
    bits = [] if gold is None else [f"gold {gold:.2f}"]
    if judge is not None:
        versus = "" if init_judge is None else f" vs π_init's answer {init_judge:+.3f}"
        bits.append(f"judge {judge:+.3f}{versus}")
    return f"{text}  [{' · '.join(bits)}]" if bits else text


def _at(values: list | None, i: int):
    return values[i] if values else None


# what the "judge" number beside each answer is (shown under the table)
JUDGE_CAPTION = (
    "**judge** = the implicit reward the round's model gives a single answer when it is evaluated, "
    "r(x, y) = β·[log π_round(y|x) − log π_init(y|x)] (the SPA judge's score, β of the run; with the "
    "judge reference `none`, β·log π_round(y|x)). Each round's column scores its own answer and, after "
    "“vs”, π_init's answer to the same prompt, so a positive difference means the round's judge "
    "prefers its own answer. π_init's column has no judge score: π_init judging itself gives 0. "
    "**gold** = the world's gold reward, where it has one."
)


def answers_side_by_side(db: str, job_id: int | None, limit: int = 30) -> tuple[pd.DataFrame, str]:
    """π_init's and each evaluated round's answer to the same held-out prompts (eval_answers_round_N.json, which
    the evaluate stage writes): see `compare_answers`."""
    if job_id is None:
        return pd.DataFrame(columns=["eval prompt"]), "Pick a run to compare its rounds' answers."
    records = [(rec["round"], rec) for rec in actions.round_answers(db, job_id)]
    if not records:
        return pd.DataFrame(columns=["eval prompt"]), "No round of this run has been evaluated yet."
    return compare_answers(records, limit)


def compare_widths(columns: int) -> list[str]:
    """The prompt a fifth of the table, the answers sharing the rest: long prompts (the text world's) would
    otherwise push every answer column out of sight."""
    if columns < 2:
        return ["100%"]
    return ["20%"] + [f"{80 / (columns - 1):.1f}%"] * (columns - 1)


def _checked(cell: str, checks: list[dict] | None) -> str:
    """An answer's cell with its instruction checks after it: ✓ followed (strict), ≈ loosely only, ✗ not."""
    if not checks:
        return cell
    marks = " · ".join(f"{'✓' if c['strict'] else '≈' if c['loose'] else '✗'} {c['instruction_id']}" for c in checks)
    return f"{cell}  ⟨{marks}⟩"


def ifeval_levels(checks: list[list[dict]]) -> str:
    """IFEval's prompt-level strict and instruction-level loose of one column's answers, from their checks."""
    instructions = [c for answer in checks for c in answer]
    strict = sum(all(c["strict"] for c in answer) for answer in checks) / len(checks)
    loose = sum(c["loose"] for c in instructions) / max(1, len(instructions))
    return f"{strict:.3f} / {loose:.3f}"


CHECKS_LEGEND = "instruction checks after each answer: ✓ followed (strict) · ≈ followed only loosely · ✗ not followed"


def compare_answers(records: list[tuple[int, dict]], limit: int = 30) -> tuple[pd.DataFrame, str]:
    """One column per evaluated round (records: (round, saved answers), by round) beside π_init's, each answer
    with its gold score where the world has a gold, the round's judge scores where the run recorded them
    (JUDGE_CAPTION) and the world's instruction checks where it made them; and the means per column (with checks,
    prompt-level strict / instruction-level loose per column)."""
    first = records[0][1]
    prompts = [" ".join(m["content"] for m in p) for p in first["prompts"]]
    init_checks = first.get("init_checks") or []
    columns = {
        "eval prompt": prompts,
        "π_init": [
            _checked(_scored(t, _at(first["init_gold"], i)), _at(init_checks, i))
            for i, t in enumerate(first["init_texts"])
        ],
    }
    means, judged = [], []
    levels = [f"π_init {ifeval_levels(init_checks)}"] if init_checks else []
    if first["init_gold"]:
        means.append(f"π_init {sum(first['init_gold']) / len(first['init_gold']):.3f}")
    for round_, rec in records:
        if rec["prompts"] != first["prompts"]:
            continue  # another eval set: not the same prompts
        judge, init_judge = rec.get("judge"), rec.get("init_judge")  # absent in runs evaluated before they existed
        checks = rec.get("checks") or []
        columns[f"round {round_}"] = [
            _checked(_scored(t, _at(rec["gold"], i), _at(judge, i), _at(init_judge, i)), _at(checks, i))
            for i, t in enumerate(rec["texts"])
        ]
        if rec["gold"]:
            means.append(f"round {round_} {sum(rec['gold']) / len(rec['gold']):.3f}")
        if checks:
            levels.append(f"round {round_} {ifeval_levels(checks)}")
        if judge and init_judge:
            wins = sum(j > k for j, k in zip(judge, init_judge))
            judged.append(
                f"round {round_} {sum(judge) / len(judge):+.3f} vs π_init's "
                f"{sum(init_judge) / len(init_judge):+.3f}, own answer preferred on {wins}/{len(judge)}"
            )
    frame = pd.DataFrame(columns).head(limit)
    summary = (
        f"{len(prompts)} held-out prompts"
        + (f" · mean gold score: {' · '.join(means)}" if means else " · no gold judge in this world")
        + (f" · mean judge score: {' · '.join(judged)}" if judged else " · no judge scores recorded")
        + (
            f" · prompt-level strict / instruction-level loose: {' · '.join(levels)} · {CHECKS_LEGEND}"
            if levels
            else ""
        )
    )
    return frame, summary


IFEVAL_COLUMNS = [
    "round",
    "prompt-level strict",
    "instruction-level loose",
    "π_init prompt-level strict",
    "π_init instruction-level loose",
    "win rate vs π_init",
    "blind audit: agrees with you",
    "audit 95% interval",
    "audit decided (n) of sample",
]


IFEVAL_KEYS = (
    "prompt_strict",
    "instruction_loose",
    "init_prompt_strict",
    "init_instruction_loose",
    "win_rate_vs_init",
)


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def ifeval_table(rows: list[dict]) -> pd.DataFrame:
    """The text world's IFEval figures per round (actions.ifeval_rounds) beside the round's blind audit."""
    out = []
    for r in rows:
        audit = r["audit"]
        cells = (
            [_figure(audit["agree"]), f"{audit['lo']:.3f}–{audit['hi']:.3f}", f"{audit['n']} of {audit['sample']}"]
            if audit
            else ["no audit", "", ""]
        )
        out.append([r["round"], *(_figure(r[k]) for k in IFEVAL_KEYS), *cells])
    return pd.DataFrame(out, columns=IFEVAL_COLUMNS)


def calibration_table(bins: list[dict]) -> pd.DataFrame:
    """The judge's agreement with gold and with people per within-round rank band (confidence range beside)."""
    columns = ["rank band", "confidence", "pairs", "agrees with gold", "agrees with people"]
    rows = [
        [
            f"{100 * b['low']:.0f}–{100 * b['high']:.0f}%",
            f"{b['min_confidence']:.3f}–{b['max_confidence']:.3f}" if b["min_confidence"] is not None else "",
            b["n"],
            f"{b['agree_gold'] / b['n_gold']:.0%} of {b['n_gold']}" if b["n_gold"] else "no gold",
            f"{b['agree_human'] / b['n_human']:.0%} of {b['n_human']}" if b["n_human"] else "none labelled",
        ]
        for b in bins
    ]
    return pd.DataFrame(rows, columns=columns)


AUDIT_COLUMNS = ["round", "agrees with you", "95% interval", "decided (n)", "ties", "both bad", "answered", "sample"]


def audit_table(rounds: list[dict]) -> pd.DataFrame:
    """Per round, the blind audit's estimate of the self-judge's accuracy (actions.round_audit_row)."""
    rows = [
        [
            r["round"],
            "–" if r["agree"] is None else f"{r['agree']:.3f}",
            f"{r['lo']:.3f}–{r['hi']:.3f}" + (" (includes 0.5)" if r["covers_half"] else ""),
            r["n"],
            r["ties"],
            r["both_bad"],
            r["answered"],
            r["sample"],
        ]
        for r in rounds
    ]
    return pd.DataFrame(rows, columns=AUDIT_COLUMNS)


def audit_view(db: str, project: str, job_id: int | None) -> tuple[pd.DataFrame, str]:
    """The blind audit of a run (or of the project's newest audited run) and what it says."""
    if not project:
        return pd.DataFrame(columns=AUDIT_COLUMNS), ""
    try:
        audit = actions.audit_estimate(db, project, job_id)
    except ActionError as e:
        return pd.DataFrame(columns=AUDIT_COLUMNS), str(e)
    if not audit["rounds"]:
        return pd.DataFrame(
            columns=AUDIT_COLUMNS
        ), "_No audit sample yet: each judged round draws one (`audit_size`)._"
    info = f"run #{audit['job_id']}" + (f" · ⚠ {audit['warning']}" if audit["warning"] else "")
    return audit_table(audit["rounds"]), info


def round_generations(db: str, project: str, job_id: int | None, round_: int | None, search: str) -> pd.DataFrame:
    columns = ["pair", "prompt", "chosen", "rejected", "label", "confidence"]
    if not project or round_ is None:
        return pd.DataFrame(columns=columns)
    rows = []
    for p in actions.round_samples(db, project, round_, job_id, search):
        a_wins = p.label != "b"
        chosen, rejected = (p.response_a, p.response_b) if a_wins else (p.response_b, p.response_a)
        if p.label in ("tie", "both_bad"):
            chosen, rejected = p.response_a, p.response_b
        rows.append(
            [
                p.id,
                p.prompt[-1]["content"],
                p.human_response or chosen,
                rejected,
                p.label,
                None if p.confidence is None else round(p.confidence, 3),
            ]
        )
    return pd.DataFrame(rows, columns=columns)


def build(db: str, project: gr.Dropdown, tab: gr.Tab) -> None:
    with gr.Row(equal_height=True):
        job = gr.Dropdown([ALL_RUNS], value=ALL_RUNS, label="Run", scale=3, elem_id="insight-job")
        refresh = gr.Button("Refresh", scale=0, min_width=120, elem_id="insight-refresh")
    summary = gr.Markdown(elem_id="insight-summary")
    with gr.Row():
        per_round = gr.ScatterPlot(
            plots.empty(["round", "value", "series"]),
            x="round",
            y="value",
            color="series",
            title="Per-round metrics",
            height=HEIGHT,
        )
        calibration = gr.ScatterPlot(
            plots.empty(["confidence", "agreement", "series", "pairs"]),
            x="confidence",
            y="agreement",
            color="series",
            title="Calibration: judge confidence vs agreement",
            x_lim=[0.5, 1.0],
            y_lim=[0.0, 1.0],
            height=HEIGHT,
            tooltip=["confidence", "agreement", "series", "pairs"],
        )
    ifeval = gr.Dataframe(
        interactive=False,
        wrap=True,
        visible=False,
        label="IFEval per round on the held-out tasks (the model's greedy answers, and π_init's), beside the round's "
        "blind audit",
        elem_id="insight-ifeval",
    )
    gr.Markdown(
        "**Calibration by rank**: the judge's pairs of each round in five bands of its margin (0% = least "
        "sure), with how often the judge agrees with the gold reward and with people's labels. Rank spreads "
        "out confidences that crowd near 0.5."
    )
    calib_table = gr.Dataframe(interactive=False, wrap=True, elem_id="insight-calibration")
    gr.Markdown(
        "**Blind audit**: each round's uniform random sample of judged pairs, which you label in the Review tab's "
        "order *audit sample (blind)* without seeing the judge's choice. How often the self-judge agreed with your "
        "first answers is an unbiased estimate of its accuracy on the round, with a 95% Wilson interval; ties and "
        "both-bad answers are counted apart."
    )
    audit_info = gr.Markdown(elem_id="insight-audit-info")
    audit_frame = gr.Dataframe(interactive=False, wrap=True, elem_id="insight-audit")
    gr.Markdown(agreement_view.CAPTION)
    people_info = gr.Markdown(elem_id="insight-agreement-info")
    people_frame = gr.Dataframe(interactive=False, wrap=True, elem_id="insight-agreement")
    with gr.Row():
        margins = gr.BarPlot(
            plots.empty(["margin", "pairs", "series"]),
            x="margin",
            y="pairs",
            color="series",
            title="Judge margin r_chosen − r_rejected (pairs per bin)",
            height=HEIGHT,
            x_label_angle=-45,
        )
        lengths = gr.BarPlot(
            plots.empty(["answer", "length", "series"]),
            x="answer",
            y="length",
            color="series",
            title="Mean length of chosen vs rejected answers per round (length bias)",
            height=HEIGHT,
            x_title="round and answer",
        )
    gr.Markdown("### Did it get better? The same held-out prompts, answered by π_init and by each round")
    compare_info = gr.Markdown(elem_id="insight-compare-info")
    compare = gr.Dataframe(interactive=False, wrap=True, max_height=420, elem_id="insight-compare")
    gr.Markdown(JUDGE_CAPTION, elem_id="insight-compare-caption")
    gr.Markdown(
        "### Generations\nStored answers only (the studio never samples a model itself): the pairs a "
        "round generated, as labelled now, and π_init's answers to the eval prompts when the run saved them."
    )
    with gr.Row(equal_height=True):
        gen_round = gr.Dropdown([], label="Round", scale=1, min_width=100, elem_id="insight-round")
        gen_search = gr.Textbox(label="Prompt contains", scale=3, placeholder="Enter to search")
    generations = gr.Dataframe(
        interactive=False,
        wrap=True,
        max_height=360,
        elem_id="insight-generations",
        column_widths=["60px", "25%", "30%", "30%", "60px", "80px"],
    )
    init_table = gr.Dataframe(
        interactive=False,
        wrap=True,
        max_height=300,
        label="π_init on the eval prompts",
        elem_id="insight-init",
        column_widths=["35%", "65%"],
    )

    def charts(project_, job_value):
        if not project_:
            return [
                "Choose a project.",
                *[gr.skip()] * 4,
                gr.update(choices=[ALL_RUNS], value=ALL_RUNS),
                gr.update(choices=[], value=None),
                gr.skip(),
                gr.update(visible=False),
                None,
            ]
        try:
            seen = actions.project_insight(db, project_, _job_id(job_value))
        except ActionError as e:
            return [str(e), *[gr.skip()] * 8, None]
        jobs, job_id, metrics_job, rounds = seen.jobs, seen.job_id, seen.metrics_job, seen.rounds
        bins = seen.calibration
        judged = sum(b["n"] for b in bins)
        gold = sum(b["n_gold"] for b in bins)
        human = sum(b["n_human"] for b in bins)
        agree = (
            f"; judge agrees with gold on {sum(b['agree_gold'] for b in bins) / gold:.1%} of {gold} pairs"
            if gold
            else ""
        )
        which = f"run #{job_id}" if job_id else "all runs"
        text = (
            f"**{which}** · {judged} judged pairs · labels: "
            + ", ".join(f"{k or '?'} {v}" for k, v in sorted(seen.label_counts.items()))
            + agree
            + (f"; {human} human a/b labels to compare with" if human else "")
            + (f" · per-round metrics of run #{metrics_job}" if metrics_job and job_id is None else "")
        )
        choices = [ALL_RUNS] + [(f"#{j.id} {j.kind} · {j.status}", j.id) for j in reversed(jobs)]
        round_update = gr.update(choices=rounds, value=rounds[-1] if rounds else None)
        (rounds_, r_order), (hist_, h_order), (len_, l_order) = (
            plots.round_frame(seen.metrics),
            plots.margin_frame(seen.margins),
            plots.length_frame(seen.lengths),
        )
        calib = plots.calibration_frame(bins)
        series = [plots.series_of(f, "series") for f in (rounds_, calib, hist_, len_)]
        return [
            text,
            gr.update(value=rounds_, sort=r_order),
            calib,
            gr.update(value=hist_, sort=h_order),
            gr.update(value=len_, sort=l_order),
            gr.update(choices=choices, value=job_id or ALL_RUNS),
            round_update,
            calibration_table(seen.rank_calibration),
            gr.update(value=ifeval_table(seen.ifeval), visible=bool(seen.ifeval)),
            series,
        ]

    def generations_view(project_, job_value, round_, search):
        job_id = _job_id(job_value)
        if job_id is None and project_:
            runs = [j for j in actions.jobs(db, project_) if j["kind"] == RUN]
            job_id = runs[-1]["job_id"] if runs else None
        try:
            gens = round_generations(db, project_, _job_id(job_value), round_, search)
            init = init_samples(db, project_, job_id)
            frame, info = answers_side_by_side(db, job_id)
        except ActionError:
            return pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), ""
        label = (
            "π_init on the eval prompts (stored by the run)"
            if len(init)
            else "π_init on the eval prompts: none stored (pick a run that has evaluated)"
        )
        return (
            gens,
            gr.update(value=init, label=label),
            gr.update(value=frame, column_widths=compare_widths(len(frame.columns))),
            (f"run #{job_id} · " if job_id else "") + info,
        )

    generation_views = [generations, init_table, compare, compare_info]
    series = gr.State(None)  # the colour values of each chart just sent, for the redraw (see plots.redraw)
    chart_outputs = [summary, per_round, calibration, margins, lengths, job, gen_round, calib_table, ifeval, series]
    charts_plots = [per_round, calibration, margins, lengths]

    def redraw(series_):
        return [plots.redraw(s) for s in series_] if series_ else [gr.skip()] * 4

    def follow_up(event):
        event.then(redraw, [series], charts_plots, show_progress="hidden", api_visibility="private").then(
            generations_view,
            [project, job, gen_round, gen_search],
            generation_views,
            show_progress="hidden",
            api_visibility="private",
        )

    for trigger in (tab.select, refresh.click, project.change, job.input):
        follow_up(trigger(charts, [project, job], chart_outputs, show_progress="hidden", api_visibility="private"))
        trigger(
            lambda p, j: audit_view(db, p, _job_id(j)),
            [project, job],
            [audit_frame, audit_info],
            show_progress="hidden",
            api_visibility="private",
        )
        trigger(
            lambda p, j: agreement_view.agreement_view(db, p, _job_id(j)),
            [project, job],
            [people_frame, people_info],
            show_progress="hidden",
            api_visibility="private",
        )
    for trigger in (gen_round.input, gen_search.submit):
        trigger(
            generations_view,
            [project, job, gen_round, gen_search],
            generation_views,
            show_progress="hidden",
            api_visibility="private",
        )
