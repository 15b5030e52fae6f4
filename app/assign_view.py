"""The Review tab's people: which queue a person works through (every pair, or their own share of a round split among
people, app.actions.assignment), their progress in it, and the panel that splits a round among people."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from app import actions
from app.actions import ActionError

EVERYONE = "all pairs"
QUEUES = {  # choice → (only my pairs, only those I have not labelled)
    EVERYONE: (False, False),
    "my queue": (True, False),
    "my queue, not labelled by me yet": (True, True),
}
PROGRESS_COLUMNS = ["run", "round", "person", "assigned", "labelled", "remaining"]


def queue_of(choice: str | None, person: str) -> tuple[str | None, bool]:
    """The ReviewQuery's person and todo for a queue choice made by `person` (the signed-in one)."""
    mine, todo = QUEUES.get(choice or EVERYONE, (False, False))
    return (person if mine else None), todo


def my_progress_md(rows: list[dict] | None, person: str | None) -> str:
    """A person's own progress, per round they have pairs assigned in; nothing outside their queue."""
    if person is None or rows is None:
        return ""
    if not rows:
        return f"\n\n**{person}**: no pairs assigned to you yet (Split a round among people, below)."
    return f"\n\n**{person}**: " + " · ".join(
        f"round {r['round']} (run #{r['job_id']}): **{r['labelled']}** of {r['assigned']} labelled, "
        f"**{r['remaining']}** to go"
        for r in rows
    )


def progress_frame(db: str, project: str | None) -> pd.DataFrame:
    """Every person's progress in the project's split rounds (empty for no project or one that does not exist)."""
    try:
        rows = actions.person_progress(db, project) if project else []
    except ActionError:
        rows = []
    keys = ["job_id"] + PROGRESS_COLUMNS[1:]
    return pd.DataFrame([[r[k] for k in keys] for r in rows], columns=PROGRESS_COLUMNS)


def build(db: str, project: gr.Dropdown, tab: gr.Tab, round_: gr.Dropdown, accounts: tuple[str, ...]):
    """The panel that splits the round chosen in the Review tab's Round filter among people; returns the assign
    event, for the tab to redraw its queue after it."""
    with gr.Accordion("Split a round among people", open=False, elem_id="assign-panel"):
        with gr.Row(equal_height=True):
            people = gr.Textbox(
                label="People (names separated by commas)",
                value=", ".join(accounts),
                placeholder="ann, bob",
                scale=3,
                elem_id="assign-people",
            )
            overlap = gr.Radio(
                [0, 1, 2], value=1, label="Overlap: extra people per pair", scale=2, elem_id="assign-overlap"
            )
            assign = gr.Button("Assign the round", variant="secondary", scale=1, elem_id="assign-button")
        gr.Markdown(
            "Each judged pair of the round chosen in **Round** above goes to overlap + 1 different people, "
            "everyone getting about the same count; assigning again replaces the split, and a pair stays with "
            "the people who already labelled it (labels are never changed). Each person then picks **my queue**. "
            "Pairs two or more people label show their agreement on the Insight tab; where they disagree the "
            "majority trains, and a tie between them leaves the pair out."
        )
        info = gr.Markdown(elem_id="assign-info")
        table = gr.Dataframe(
            pd.DataFrame(columns=PROGRESS_COLUMNS), interactive=False, max_height=240, elem_id="assign-progress"
        )

    def on_assign(project_, round_value, names, overlap_):
        if round_value in (None, "", "any"):
            return "✗ choose the round to split in the Round filter above", gr.skip()
        try:
            done = actions.assign_review(db, project_, round_value, names, overlap_ or 0, accounts=accounts)
        except ActionError as e:
            return f"✗ {e}", gr.skip()
        split = ", ".join(f"{name} {n}" for name, n in done["people"].items())
        kept = f"; {done['kept']} places kept for a label already given" if done["kept"] else ""
        return (
            f"Round {done['round']} of run #{done['job_id']}: {done['pairs']} pairs, each to "
            f"{done['overlap'] + 1} of {len(done['people'])} people ({split}){kept}.",
            progress_frame(db, project_),
        )

    for trigger in (tab.select, project.change):
        trigger(lambda p: progress_frame(db, p), [project], [table], show_progress="hidden", api_visibility="private")
    return assign.click(on_assign, [project, round_, people, overlap], [info, table], api_visibility="private")
