"""Review tab: the pairs the self-judge is least sure of (flagged first, then least confident), filters (also on
the within-round rank of the judge's margin), pagination, side-by-side answers with the judge's numbers, the
project's annotation guidelines beside them, a reviewed / remaining count per round, undo, and one-key actions
(a / b: that answer is better, t tie, x both bad, k keep, f flip, s skip, n / p next / previous, u undo). Every
label goes through Store.set_label, which audits it. The order "audit sample (blind)" shows the round's blind audit
sample with the judge's numbers and the label in force hidden until the person answers (an audit answer)."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr
import pandas as pd

from app import actions
from app.actions import RANK_BANDS, REVIEW_COLUMNS, ActionError, ReviewCursor, ReviewQuery, ReviewView
from app.review_html import (
    NO_GUIDELINES,
    answer_head,
    checks_html,
    history_html,
    pair_head,
    progress_md,
    prompt_text,
)
from app.security import actor_of

ANY = "any"
SOURCES = [ANY, "self", "human", "accepted", "gold"]
FLAGS = {ANY: None, "flagged": True, "not flagged": False}
ORDERS = {
    "flagged, then least confident": "uncertain",
    "judges disagree first": "disagree",
    "most confident first": "confident",
    "newest first": "newest",
    "audit sample (blind)": "audit",
}
SHORTCUTS = {
    "a": "review-a",
    "b": "review-b",
    "t": "review-tie",
    "x": "review-bothbad",
    "k": "review-keep",
    "f": "review-flip",
    "s": "review-skip",
    "n": "review-next",
    "p": "review-prev",
    "u": "review-undo",
}
TOP_BANDS = [band for band, (low, _) in RANK_BANDS.items() if low is not None]
EDGE_MESSAGES = {
    "empty": "Nothing to review here.",
    "first": "This is the first pair.",
    "last": "That was the last pair of the queue.",
}

# Loaded in the page head: one key press clicks the matching button while the Review tab is shown, and never
# while the person is typing in a text field or the YAML editor.
KEYBOARD_JS = """
<script>
(() => {
  const keys = %s;
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    const typing = t && ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) && !t.readOnly && !t.disabled;
    if (t && (t.isContentEditable || typing)) return;
    const id = keys[(e.key || "").toLowerCase()];
    if (!id) return;
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null) return;
    const button = el.tagName === "BUTTON" ? el : el.querySelector("button");
    if (!button || button.disabled) return;
    e.preventDefault();
    button.click();
  });
})();
</script>
""" % str(SHORTCUTS).replace("'", '"')


def query_from(round_, source, flagged, rank, min_conf, max_conf, search, order) -> ReviewQuery:
    return ReviewQuery(
        round=None if round_ in (None, ANY, "") else int(round_),
        source=None if source in (None, ANY) else source,
        flagged=FLAGS.get(flagged),
        min_confidence=None if min_conf is None or min_conf <= 0.5 else float(min_conf),
        max_confidence=None if max_conf is None or max_conf >= 1.0 else float(max_conf),
        search=search or "",
        order=ORDERS.get(order, "uncertain"),
        rank_band=None if rank in (None, ANY) else rank,
    )


def render(view: ReviewView | None, message: str = "") -> list:
    """Every output of the tab for a view of a page snapshot (actions.ReviewView): table, page line, progress, the
    current pair, message, and the snapshot as the tab's state."""
    cursor = view.cursor if view else None
    progress = progress_md(view.progress) if view else ""
    if cursor is None or not cursor.ids:
        total = cursor.total if cursor else 0
        info = "No pairs match." if cursor else "Choose a project."
        empty = pd.DataFrame(columns=REVIEW_COLUMNS)
        return [
            empty,
            f"{info} ({total} pairs)",
            progress,
            "<div class='spa-pair-head'>Nothing to review here.</div>",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            message,
            cursor,
        ]
    table = pd.DataFrame(view.rows, columns=REVIEW_COLUMNS)
    p, size, offset = view.pair, cursor.page_size, cursor.offset
    info = (
        f"Pairs **{offset + 1}–{offset + len(cursor.ids)}** of **{cursor.total}** · page "
        f"{offset // size + 1} of {max(1, -(-cursor.total // size))}"
    )
    position = f"{offset + cursor.index + 1} of {cursor.total}"
    return [
        table,
        info,
        progress,
        pair_head(p, position),
        prompt_text(p),
        answer_head("A", p),
        p["response_a"],
        checks_html(p, "a"),
        answer_head("B", p),
        p["response_b"],
        checks_html(p, "b"),
        p["human_response"] or "",
        history_html(p),
        message,
        cursor,
    ]


def stepped(view: ReviewView, message: str = "") -> list:
    """A view after a step, saying why it stayed put at an edge of the queue (after the label's message, if any)."""
    if view.edge == "last":
        return render(view, (message + " " if message else "") + EDGE_MESSAGES["last"])
    return render(view, message or EDGE_MESSAGES.get(view.edge, ""))


def build(db: str, project: gr.Dropdown, tab: gr.Tab) -> None:
    with gr.Row(equal_height=True):
        round_ = gr.Dropdown([ANY], value=ANY, label="Round", min_width=90, scale=1, elem_id="review-round")
        source = gr.Dropdown(SOURCES, value=ANY, label="Label source", min_width=120, scale=1, elem_id="review-source")
        flagged = gr.Dropdown(list(FLAGS), value=ANY, label="Flag", min_width=110, scale=1, elem_id="review-flag")
        rank = gr.Dropdown(
            [ANY] + list(RANK_BANDS),
            value=ANY,
            label="Rank in round (margin)",
            min_width=130,
            scale=1,
            elem_id="review-rank",
        )
        min_conf = gr.Number(0.5, label="Confidence ≥", minimum=0.5, maximum=1.0, step=0.01, min_width=100, scale=1)
        max_conf = gr.Number(1.0, label="Confidence ≤", minimum=0.5, maximum=1.0, step=0.01, min_width=100, scale=1)
        search = gr.Textbox(
            label="Search text",
            placeholder="words in the prompt or answers, Enter to search",
            min_width=180,
            scale=2,
            elem_id="review-search",
        )
        order = gr.Dropdown(list(ORDERS), value=list(ORDERS)[0], label="Order", min_width=180, scale=2)
        page_size = gr.Dropdown([20, 30, 50], value=20, label="Per page", min_width=80, scale=1)
    with gr.Row(equal_height=True):
        prev_page = gr.Button("◀ Previous page", size="sm", min_width=140, scale=0, elem_id="review-prev-page")
        next_page = gr.Button("Next page ▶", size="sm", min_width=120, scale=0, elem_id="review-next-page")
        refresh_btn = gr.Button("Refresh", size="sm", min_width=90, scale=0, elem_id="review-refresh")
        page_info = gr.Markdown(elem_id="review-page-info")
    progress = gr.Markdown(elem_id="review-progress")
    table = gr.Dataframe(
        pd.DataFrame(columns=REVIEW_COLUMNS),
        interactive=False,
        max_height=300,
        wrap=False,
        elem_id="review-table",
        column_widths=["55px", "70px", "35px", "60px", "75px", "75px", "60px", "90px", "70px", "21%", "14%", "14%"],
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            head = gr.HTML(elem_id="review-pair-head")
            prompt = gr.Textbox(label="Prompt", interactive=False, lines=2, max_lines=6, elem_id="review-prompt")
            with gr.Row(equal_height=True):
                with gr.Column(elem_classes="spa-answer"):
                    a_head = gr.HTML()
                    a_text = gr.Textbox(
                        show_label=False, interactive=False, lines=6, max_lines=14, elem_id="review-answer-a"
                    )
                    a_checks = gr.HTML(elem_id="review-checks-a")
                with gr.Column(elem_classes="spa-answer"):
                    b_head = gr.HTML()
                    b_text = gr.Textbox(
                        show_label=False, interactive=False, lines=6, max_lines=14, elem_id="review-answer-b"
                    )
                    b_checks = gr.HTML(elem_id="review-checks-b")
        with gr.Column(scale=1, min_width=260):
            gr.Markdown("**Annotation guidelines**")
            guide = gr.Markdown(NO_GUIDELINES, elem_id="review-guidelines")
            with gr.Accordion("Edit guidelines", open=False):
                guide_text = gr.Textbox(
                    show_label=False,
                    lines=5,
                    max_lines=20,
                    elem_id="review-guidelines-edit",
                    placeholder="what makes an answer better in this project (Markdown)",
                )
                guide_save = gr.Button("Save guidelines", size="sm", elem_id="review-guidelines-save")
    with gr.Row(elem_id="review-actions"):
        better_a = gr.Button("A is better [a]", variant="primary", elem_id="review-a", min_width=110)
        better_b = gr.Button("B is better [b]", variant="primary", elem_id="review-b", min_width=110)
        tie = gr.Button("Tie [t]", elem_id="review-tie", min_width=80)
        both_bad = gr.Button("Both bad [x]", elem_id="review-bothbad", min_width=100)
        keep = gr.Button("Keep label [k]", elem_id="review-keep", min_width=110)
        flip = gr.Button("Flip [f]", elem_id="review-flip", min_width=80)
        skip = gr.Button("Skip [s]", elem_id="review-skip", min_width=80)
        prev = gr.Button("◀ Prev [p]", elem_id="review-prev", min_width=90)
        nxt = gr.Button("Next [n] ▶", elem_id="review-next", min_width=90)
        undo = gr.Button("Undo last action [u]", elem_id="review-undo", min_width=150)
    message = gr.Markdown(elem_id="review-message")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            better = gr.Textbox(
                label="Write a better answer: it becomes the chosen answer. The rejected one is the "
                "answer your A/B choice rejects, or else the answer the judge preferred",
                lines=3,
                max_lines=10,
                elem_id="review-better",
            )
            save_better = gr.Button("Save better answer", elem_id="review-save-better")
        with gr.Column(scale=2):
            gr.Markdown("**Label history**")
            history = gr.Markdown(elem_id="review-history")
    with gr.Accordion("Accept self labels in bulk", open=False):
        with gr.Row(equal_height=True):
            band = gr.Radio(
                TOP_BANDS,
                value="top 50%",
                label="The surest pairs of each round (rank by margin)",
                scale=3,
                elem_id="review-bulk-band",
            )
            bulk_btn = gr.Button("Accept unread", variant="secondary", scale=1, elem_id="review-bulk")
        gr.Markdown(
            "Every self-labelled pair in the chosen band of its round (in the round chosen above, or all "
            "rounds) gets the label source **accepted**, each with its own audit event. Nobody read them, so "
            "training keeps treating them as self labels: they can be flagged as noisy and are not replayed "
            "in later rounds (only pairs a person labelled are). Exports show them as `accepted`."
        )
    state = gr.State(None)

    filters = [round_, source, flagged, rank, min_conf, max_conf, search, order, page_size]
    view = [
        table,
        page_info,
        progress,
        head,
        prompt,
        a_head,
        a_text,
        a_checks,
        b_head,
        b_text,
        b_checks,
        better,
        history,
        message,
        state,
    ]

    def round_choices(project_):
        if not project_:
            return gr.update(choices=[ANY], value=ANY)
        return gr.update(choices=[ANY] + [str(r) for r in actions.pair_rounds(db, project_)])

    def shown(state_: ReviewCursor | None) -> ReviewView | None:
        return actions.show_review(db, state_) if state_ else None

    def source_choices(project_):
        """The label sources the project's pairs have, with their counts (seed pairs are on the Project tab)."""
        counts = actions.project_summary(db, project_)["labels"] if project_ else {}
        return gr.update(
            choices=[(ANY, ANY)] + [(f"{name} ({counts[name]})", name) for name in SOURCES[1:] if counts.get(name)]
        )

    def guidelines_md(project_):
        text = actions.guidelines(db, project_) if project_ else ""
        return text or NO_GUIDELINES, text

    def apply(project_, *values, offset=0, index=0, message=""):
        *query_values, size = values
        if not project_:
            return render(None)
        try:
            query = query_from(*query_values)
            return render(actions.open_review(db, project_, query, offset, int(size), index), message)
        except (ActionError, ValueError) as e:
            return render(None, f"✗ {e}")

    def on_tab(project_, *values):
        try:
            guide_view, sources = guidelines_md(project_), source_choices(project_)
        except ActionError:
            guide_view, sources = (NO_GUIDELINES, ""), gr.skip()
        return [round_choices(project_), sources, *guide_view] + apply(project_, *values)

    for trigger in (tab.select, project.change):
        trigger(
            on_tab,
            [project] + filters,
            [round_, source, guide, guide_text] + view,
            show_progress="hidden",
            api_visibility="private",
        )
    for trigger in (
        refresh_btn.click,
        search.submit,
        round_.input,
        source.input,
        flagged.input,
        rank.input,
        order.input,
        page_size.input,
        min_conf.submit,
        max_conf.submit,
    ):
        trigger(apply, [project] + filters, view, show_progress="hidden", api_visibility="private")

    def on_guidelines(project_, text):
        try:
            saved = actions.save_guidelines(db, project_, text)
        except ActionError as e:
            return gr.skip(), gr.skip(), f"✗ {e}"
        return saved or NO_GUIDELINES, saved, "Guidelines saved."

    guide_save.click(on_guidelines, [project, guide_text], [guide, guide_text, message], api_visibility="private")

    def turn_page(project_, state_, step, *values):
        if not state_:
            return apply(project_, *values)
        offset = max(0, state_.offset + step * state_.page_size)
        if step > 0 and offset >= state_.total:
            return render(shown(state_), "This is the last page.")
        return apply(project_, *values, offset=offset)

    prev_page.click(
        lambda p, s, *v: turn_page(p, s, -1, *v),
        [project, state] + filters,
        view,
        show_progress="hidden",
        api_visibility="private",
    )
    next_page.click(
        lambda p, s, *v: turn_page(p, s, +1, *v),
        [project, state] + filters,
        view,
        show_progress="hidden",
        api_visibility="private",
    )

    def move(state_, step, message=""):
        """To the next / previous pair; past the page's end the next page is loaded (see actions.next_offset)."""
        if not state_:
            return render(None, message or EDGE_MESSAGES["empty"])
        return stepped(actions.step_review(db, state_, step), message)

    def label(state_, action, actor, text=None):
        """One label, then the next pair: one call, so one database connection per click."""
        if not state_ or not state_.ids:
            return render(shown(state_), "Nothing to label here.")
        pair_id = state_.ids[state_.index]
        try:
            view = actions.label_in_review(db, state_, action, human_response=text, actor=actor)
        except ActionError as e:
            return render(shown(state_), f"✗ {e}")
        event = view.event
        what = "a written answer, chosen" if text else f"**{event.new_label}**"
        if view.revealed is not None:
            return stepped(
                view, f"Pair #{pair_id} audited: you said {what}; the self-judge had said **{view.revealed}**."
            )
        return stepped(view, f"Pair #{pair_id}: {event.old_label} ({event.old_source}) → {what} (human)")

    def labeller(action):
        def labelled(project_, state_, request: gr.Request):
            return label(state_, action, actor_of(request))

        return labelled

    for button, action in (
        (better_a, "a"),
        (better_b, "b"),
        (keep, "keep"),
        (flip, "flip"),
        (tie, "tie"),
        (both_bad, "both_bad"),
    ):
        button.click(labeller(action), [project, state], view, show_progress="hidden", api_visibility="private")

    def on_better(project_, state_, text, request: gr.Request):
        return label(state_, "keep", actor_of(request), text)

    save_better.click(
        on_better,
        [project, state, better],
        view,
        show_progress="hidden",
        api_visibility="private",
    )
    skip.click(
        lambda p, s: move(s, +1, "Skipped."), [project, state], view, show_progress="hidden", api_visibility="private"
    )
    nxt.click(lambda p, s: move(s, +1), [project, state], view, show_progress="hidden", api_visibility="private")
    prev.click(lambda p, s: move(s, -1), [project, state], view, show_progress="hidden", api_visibility="private")

    def on_undo(project_, state_, request: gr.Request):
        """Reverts the last action whole (a bulk accept is one) and shows the first pair it reverted."""
        try:
            undone = actions.undo_last_label(db, project_, actor_of(request))
        except ActionError as e:
            return render(shown(state_), f"✗ {e}")
        kept = f" {len(undone['kept'])} pair(s) keep the label someone else gave them since." if undone["kept"] else ""
        if len(undone["pairs"]) + len(undone["kept"]) > 1:
            message = (
                f"Undone: the {undone['action']} of {len(undone['pairs']) + len(undone['kept'])} pairs; "
                f"{len(undone['pairs'])} are back to their previous labels.{kept}"
            )
        else:
            message = (
                f"Undone: pair #{undone['pair_id']} is back to **{undone['label']}** ({undone['label_source']}).{kept}"
            )
            if state_ and undone["pair_id"] in state_.ids:
                return render(shown(replace(state_, index=state_.ids.index(undone["pair_id"]))), message)
        query = state_.query if state_ else ReviewQuery()
        fresh = actions.open_review(
            db,
            project_,
            query,
            state_.offset if state_ else 0,
            state_.page_size if state_ else 20,
            focus=undone["pair_id"],
        )
        return render(fresh, message)

    undo.click(on_undo, [project, state], view, show_progress="hidden", api_visibility="private")

    def on_select(state_, evt: gr.SelectData):
        if not state_ or not state_.ids:
            return render(shown(state_))
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return render(shown(replace(state_, index=min(max(int(row), 0), len(state_.ids) - 1))))

    table.select(on_select, [state], view, show_progress="hidden", api_visibility="private")

    def on_bulk(request: gr.Request, project_, band_, *values):
        try:
            query = query_from(*values[:-1])
            n = actions.bulk_accept(db, project_, round=query.round, top=band_, actor=actor_of(request))["accepted"]
        except (ActionError, ValueError) as e:
            return apply(project_, *values, message=f"✗ {e}")
        where = f"round {query.round}" if query.round is not None else "every round"
        return apply(
            project_,
            *values,
            message=f"Accepted **{n}** self labels in the {band_} of {where} (label source: accepted).",
        )

    bulk_btn.click(on_bulk, [project, band] + filters, view, api_visibility="private")
