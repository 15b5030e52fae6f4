"""pandas frames for Gradio's native plots (gr.LinePlot / gr.BarPlot), built from storage rows. Pure functions."""

from __future__ import annotations

import gradio as gr
import pandas as pd

TRAIN_PLOTS = {
    "train/loss": "training loss",
    "train/rewards/margins": "reward margin (chosen − rejected)",
    "train/rewards/accuracies": "reward accuracy",
    "train/noise/flagged_fraction": "flagged fraction (noise detection)",
}
ROUND_METRICS = {
    "eval/judge_accuracy": "judge accuracy (eval)",
    "eval/gold_score": "gold score (eval)",
    "eval/win_rate_vs_init": "win rate vs π_init (eval)",
    "round/self_label_accuracy": "self-label accuracy (gold)",
    "round/flagged_fraction": "flagged fraction",
    "round/chose_less_likely": "judge chose π_init's less likely answer",
    # the text world's IFEval figures on its held-out tasks (engine/worlds/text_eval.py); π_init's are flat lines
    "text/eval/prompt_strict": "IFEval prompt-level strict",
    "text/eval/instruction_loose": "IFEval instruction-level loose",
    "text/eval/init/prompt_strict": "π_init IFEval prompt-level strict",
    "text/eval/init/instruction_loose": "π_init IFEval instruction-level loose",
}


def series_of(frame: pd.DataFrame, color: str) -> list[str]:
    return list(dict.fromkeys(frame[color].tolist())) if color in frame else []


def redraw(series: list[str] | None):
    """The second half of a plot update. Gradio's native plots only swap the data when the value alone changes,
    keeping the colour domain and column types of the first value they drew (a chart that started empty, or a
    line for a new round, would never show); a changed `colors_in_legend` makes them rebuild the chart from the
    value they hold. Sent in the same update as the value, the rebuild can race the data swap and draw nothing,
    so the tabs send it in a follow-up event (`.then`)."""
    return gr.skip() if series is None else gr.update(colors_in_legend=series)


def empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c not in ("series", "round") else "object") for c in columns})


def train_frame(metrics: list[dict], name: str) -> pd.DataFrame:
    """One training metric per optimiser step. Steps restart in every stage, so x is the step counted over the
    whole run (each round continues after the last step of the one before) and colour tells the round."""
    rows = [m for m in metrics if m["name"] == name]
    if not rows:
        return empty(["step", "value", "round"])
    offset, last_round, last_max, out = 0, None, 0, []
    for m in sorted(rows, key=lambda m: (m["round"] or 0, m["step"], m["id"] or 0)):
        rnd = m["round"] or 0
        if rnd != last_round:
            offset += last_max
            last_round, last_max = rnd, 0
        last_max = max(last_max, m["step"])
        out.append({"step": offset + m["step"], "value": m["value"], "round": f"round {rnd}"})
    return pd.DataFrame(out)


def step_range(frames: list[pd.DataFrame]) -> list[float] | None:
    """The smallest and largest step over several training plots (None when they are empty)."""
    steps = [float(x) for f in frames if "step" in f and len(f) for x in (f["step"].min(), f["step"].max())]
    if not steps:
        return None
    low, high = min(steps), max(steps)
    return [low, high if high > low else low + 1]


def round_label(r: int, width: int = 1) -> str:
    return f"round {r:0{width}d}"


def round_frame(metrics: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """The per-round evaluation metrics, one line per metric (the latest value if a stage ran twice), and the
    order of the round labels on the x axis."""
    latest: dict[tuple[str, int], float] = {}
    for m in sorted(metrics, key=lambda m: m["id"] or 0):
        if m["name"] in ROUND_METRICS and m["round"] is not None:
            latest[(m["name"], m["round"])] = m["value"]
    if not latest:
        return empty(["round", "value", "series"]), []
    rounds = sorted({r for _, r in latest})
    width = len(str(rounds[-1]))
    rows = [
        {"round": round_label(r, width), "value": v, "series": ROUND_METRICS[n]}
        for (n, r), v in sorted(latest.items(), key=lambda x: x[0][1])
    ]
    return pd.DataFrame(rows), [round_label(r, width) for r in rounds]


def calibration_frame(bins: list[dict]) -> pd.DataFrame:
    """Agreement of the self-judge with gold and with human labels per confidence bin, beside the ideal y = x."""
    rows = []
    for b in bins:
        mid = round((b["low"] + b["high"]) / 2, 3)
        rows.append({"confidence": mid, "agreement": mid, "series": "ideal (calibrated)", "pairs": b["n"]})
        if b["n_gold"]:
            rows.append(
                {
                    "confidence": mid,
                    "agreement": b["agree_gold"] / b["n_gold"],
                    "series": "vs gold reward",
                    "pairs": b["n_gold"],
                }
            )
        if b["n_human"]:
            rows.append(
                {
                    "confidence": mid,
                    "agreement": b["agree_human"] / b["n_human"],
                    "series": "vs human labels",
                    "pairs": b["n_human"],
                }
            )
    return pd.DataFrame(rows) if rows else empty(["confidence", "agreement", "series", "pairs"])


def _bin_label(low: float, high: float) -> str:
    return f"{(low + high) / 2:.3g}"


def margin_frame(bins: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """Histogram bars labelled by their bin's centre, in numeric order."""
    if not bins:
        return empty(["margin", "pairs", "series"]), []
    rows = [
        {
            "margin": _bin_label(b["low"], b["high"]),
            "pairs": b["n"],
            "series": "flagged" if b["noisy"] else "not flagged",
        }
        for b in bins
    ]
    order = [_bin_label(b["low"], b["high"]) for b in sorted(bins, key=lambda b: b["bin"])]
    return pd.DataFrame(rows), list(dict.fromkeys(order))


def length_frame(rows: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """Mean length of chosen and rejected answers per round, side by side: tokens when every round has counts,
    else characters."""
    if not rows:
        return empty(["answer", "length", "series"]), []
    tokens = all(r["chosen_tokens"] is not None and r["rejected_tokens"] is not None for r in rows)
    unit = "tokens" if tokens else "characters"
    key = "tokens" if tokens else "chars"
    out, order = [], []
    for r in rows:
        for side in ("chosen", "rejected"):
            label = f"r{r['round']} {side}"
            out.append({"answer": label, "length": r[f"{side}_{key}"], "series": f"{side} ({unit})"})
            order.append(label)
    return pd.DataFrame(out), order
