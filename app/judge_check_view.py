"""The Project tab's self-judge check: a button that queues a `judge-check` job (app.actions.queue_judge_check) and,
while it runs and once it is done, its progress and the table of each judge variant's agreement with the project's
own labels (app.actions.judge_check_result)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from app import actions
from app.actions import ActionError

POLL_S = 2.0
COLUMNS = ["judge", "agrees with my labels", "95% interval", "pairs"]


def result_table(result: dict | None) -> pd.DataFrame:
    """One row per judge variant, the chosen one marked."""
    rows = [
        [
            name + (" ← chosen" if name == result["chosen"] else ""),
            f"{e['agree']:.1%}",
            f"{e['lo']:.1%} – {e['hi']:.1%}",
            int(e["n"]),
        ]
        for name, e in ((result or {}).get("judges") or {}).items()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def result_md(result: dict | None) -> str:
    if result is None:
        return "Not checked yet: the check trains seed DPO on part of your labelled pairs and judges the rest."
    job = f"job #{result['job_id']}"
    if result["status"] in actions.ACTIVE:
        return f"Checking ({job}, {result['status']}, {result['progress']:.0%})…"
    if result["status"] != "done":
        return f"✗ The check ({job}) {result['status']}: {result['error'] or 'no result'}"
    best = result["judges"][result["chosen"]]
    coin = " Its interval includes 50%: your labels cannot tell it from a coin." if best["lo"] <= 0.5 else ""
    return (
        f"✓ Checked on **{best['n']}** labelled pairs in {result['minutes']:.1f} min ({job}): the best lower bound is "
        f"**{result['chosen']}**.{coin}"
    )


def build(db: str, project: gr.Dropdown) -> None:
    """The button, the status line and the table, inside the layout being built."""
    gr.Markdown("### Self-judge")
    check_btn = gr.Button("Check the self-judge on my labels", elem_id="judge-check-button")
    status = gr.Markdown(elem_id="judge-check-status")
    table = gr.Dataframe(result_table(None), interactive=False, visible=False, elem_id="judge-check-table")
    timer = gr.Timer(POLL_S, active=False)

    def show(project_):
        """The latest check: its table once done; the timer runs while it is under way."""
        try:
            result = actions.judge_check_result(db, project_) if project_ else None
        except ActionError as e:
            return f"✗ {e}", gr.update(visible=False), gr.Timer(active=False)
        running = result is not None and result["status"] in actions.ACTIVE
        done = result is not None and result["status"] == "done"
        return result_md(result), gr.update(value=result_table(result), visible=done), gr.Timer(active=running)

    def on_check(project_):
        try:
            actions.queue_judge_check(db, project_)
        except ActionError as e:
            return f"✗ {e}", gr.skip(), gr.skip()
        return show(project_)

    outputs = [status, table, timer]
    check_btn.click(on_check, [project], outputs, api_visibility="private")
    timer.tick(show, [project], outputs, show_progress="hidden", api_visibility="private")
    project.change(show, [project], outputs, show_progress="hidden", api_visibility="private")
