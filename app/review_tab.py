"""Review tab: the pairs the self-judge is least sure of (flagged first, then least confident), filters,
pagination, side-by-side answers with the judge's numbers, and one-key actions (k keep, f flip, t tie,
b both bad, s skip, n/p next/previous). Every label goes through Store.set_label, which audits it."""
from __future__ import annotations

import html
from dataclasses import asdict

import gradio as gr
import pandas as pd

from app import actions
from app.actions import REVIEW_COLUMNS, ActionError, ReviewQuery

ANY = "any"
SOURCES = [ANY, "self", "human", "gold", "seed"]
FLAGS = {ANY: None, "flagged": True, "not flagged": False}
ORDERS = {"flagged, then least confident": "uncertain", "most confident first": "confident", "newest first": "newest"}
SHORTCUTS = {"k": "review-keep", "f": "review-flip", "t": "review-tie", "b": "review-bothbad", "s": "review-skip",
             "n": "review-next", "p": "review-prev"}

# Loaded in the page head: one key press clicks the matching button while the Review tab is shown, and never
# while the person is typing in a text field or the YAML editor.
KEYBOARD_JS = """
<script>
(() => {
  const keys = %s;
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const t = e.target;
    if (t && (t.isContentEditable || (["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) && !t.readOnly && !t.disabled))) return;
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


def query_from(round_, source, flagged, min_conf, max_conf, search, order) -> ReviewQuery:
    return ReviewQuery(round=None if round_ in (None, ANY, "") else int(round_),
                       source=None if source in (None, ANY) else source, flagged=FLAGS.get(flagged),
                       min_confidence=None if min_conf is None or min_conf <= 0.5 else float(min_conf),
                       max_confidence=None if max_conf is None or max_conf >= 1.0 else float(max_conf),
                       search=search or "", order=ORDERS.get(order, "uncertain"))


def load_page(db: str, project: str, query: ReviewQuery, offset: int, page_size: int, index: int = 0) -> dict:
    """A fresh page snapshot: the ids it shows stay put while the person labels them."""
    page = actions.review_page(db, project, query, page_size=page_size, offset=offset)
    return {"query": asdict(query), "offset": page.offset, "page_size": page.page_size, "ids": page.pair_ids,
            "total": page.total, "index": min(max(index, 0), max(len(page.pair_ids) - 1, 0)), "changes": []}


def _num(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _answer_head(which: str, p: dict) -> str:
    side = which.lower()
    reward, gold = p[f"reward_{side}"], p[f"gold_{side}"]
    preferred = p["label"] == side
    badge = ("<span class='spa-badge spa-yes'>preferred</span>" if preferred else
             "<span class='spa-badge spa-no'>rejected</span>" if p["label"] in ("a", "b") else "")
    judge = " · judge's pick" if p["judge_label"] == side else ""
    bits = [f"reward {_num(reward)}", f"logp π {_num(p[f'logp_policy_{side}'], 1)}",
            f"π_init {_num(p[f'logp_init_{side}'], 1)}"]
    if gold is not None:
        bits.append(f"gold {_num(gold)}")
    if p[f"tokens_{side}"] is not None:
        bits.append(f"{p[f'tokens_{side}']} tokens")
    return f"<div class='spa-answer-head'><b>Answer {which}</b> {badge}{judge}<br><small>{' · '.join(bits)}</small></div>"


def _pair_head(p: dict, position: str) -> str:
    flag = "<span class='spa-badge spa-flag'>⚑ flagged as likely noisy</span>" if p["noisy"] else ""
    label = html.escape(str(p["label"]))
    rewrite = " · has a written better answer" if p["human_response"] else ""
    return (f"<div class='spa-pair-head'><b>Pair #{p['id']}</b> · round {p['round']} · {position} · "
            f"label <b>{label}</b> ({html.escape(str(p['label_source']))}) · judge confidence "
            f"<b>{_num(p['confidence'])}</b> · margin {_num(p['margin'])} · ext margin {_num(p['ext_margin'])} "
            f"{flag}{rewrite}</div>")


def _history(p: dict) -> str:
    if not p["events"]:
        return "_No label changes yet._"
    lines = [f"- {e['at'][:19].replace('T', ' ')} · {html.escape(e['actor'])}: {e['old_label']} ({e['old_source']}) → "
             f"**{e['new_label']}** ({e['new_source']}){' · ' + html.escape(e['note']) if e['note'] else ''}"
             for e in p["events"][-5:]]
    return "\n".join(lines)


def _prompt_text(p: dict) -> str:
    return "\n\n".join(f"[{m['role']}] {m['content']}" if len(p["prompt"]) > 1 else m["content"] for m in p["prompt"])


def render(db: str, state: dict | None, message: str = "") -> list:
    """Every output of the tab for a page snapshot: table, page line, the current pair, message, state."""
    if not state or not state["ids"]:
        total = state["total"] if state else 0
        info = "No pairs match." if state else "Choose a project."
        empty = pd.DataFrame(columns=REVIEW_COLUMNS)
        return [empty, f"{info} ({total} pairs)", "<div class='spa-pair-head'>Nothing to review here.</div>", "",
                "", "", "", "", "", "", message, state]
    with actions.opened(db) as store:
        pairs = [store.pair(i) for i in state["ids"]]
    table = pd.DataFrame([actions.review_row(p) for p in pairs], columns=REVIEW_COLUMNS)
    index = state["index"]
    p = actions.pair_detail(db, state["ids"][index])
    size, offset = state["page_size"], state["offset"]
    first = offset + 1
    info = (f"Pairs **{first}–{offset + len(state['ids'])}** of **{state['total']}** · page "
            f"{offset // size + 1} of {max(1, -(-state['total'] // size))}")
    position = f"{offset + index + 1} of {state['total']}"
    return [table, info, _pair_head(p, position), _prompt_text(p), _answer_head("A", p), p["response_a"],
            _answer_head("B", p), p["response_b"], p["human_response"] or "", _history(p), message, state]


def build(db: str, project: gr.Dropdown, tab: gr.Tab) -> None:
    with gr.Row(equal_height=True):
        round_ = gr.Dropdown([ANY], value=ANY, label="Round", min_width=90, scale=1, elem_id="review-round")
        source = gr.Dropdown(SOURCES, value=ANY, label="Label source", min_width=110, scale=1, elem_id="review-source")
        flagged = gr.Dropdown(list(FLAGS), value=ANY, label="Flag", min_width=110, scale=1, elem_id="review-flag")
        min_conf = gr.Number(0.5, label="Confidence ≥", minimum=0.5, maximum=1.0, step=0.01, min_width=100, scale=1)
        max_conf = gr.Number(1.0, label="Confidence ≤", minimum=0.5, maximum=1.0, step=0.01, min_width=100, scale=1)
        search = gr.Textbox(label="Search text", placeholder="words in the prompt or answers, Enter to search",
                            min_width=180, scale=2, elem_id="review-search")
        order = gr.Dropdown(list(ORDERS), value=list(ORDERS)[0], label="Order", min_width=180, scale=2)
        page_size = gr.Dropdown([20, 30, 50], value=20, label="Per page", min_width=80, scale=1)
    with gr.Row(equal_height=True):
        prev_page = gr.Button("◀ Previous page", size="sm", min_width=140, scale=0, elem_id="review-prev-page")
        next_page = gr.Button("Next page ▶", size="sm", min_width=120, scale=0, elem_id="review-next-page")
        refresh_btn = gr.Button("Refresh", size="sm", min_width=90, scale=0, elem_id="review-refresh")
        page_info = gr.Markdown(elem_id="review-page-info")
    table = gr.Dataframe(pd.DataFrame(columns=REVIEW_COLUMNS), interactive=False, max_height=300, wrap=False,
                         elem_id="review-table", column_widths=["60px", "60px", "40px", "65px", "60px", "70px",
                                                                "28%", "18%", "18%"])
    head = gr.HTML(elem_id="review-pair-head")
    prompt = gr.Textbox(label="Prompt", interactive=False, lines=2, max_lines=6, elem_id="review-prompt")
    with gr.Row(equal_height=True):
        with gr.Column(elem_classes="spa-answer"):
            a_head = gr.HTML()
            a_text = gr.Textbox(show_label=False, interactive=False, lines=6, max_lines=14, elem_id="review-answer-a")
        with gr.Column(elem_classes="spa-answer"):
            b_head = gr.HTML()
            b_text = gr.Textbox(show_label=False, interactive=False, lines=6, max_lines=14, elem_id="review-answer-b")
    with gr.Row(elem_id="review-actions"):
        keep = gr.Button("Keep label [k]", variant="primary", elem_id="review-keep", min_width=110)
        flip = gr.Button("Flip [f]", elem_id="review-flip", min_width=90)
        tie = gr.Button("Tie [t]", elem_id="review-tie", min_width=90)
        both_bad = gr.Button("Both bad [b]", elem_id="review-bothbad", min_width=110)
        skip = gr.Button("Skip [s]", elem_id="review-skip", min_width=90)
        prev = gr.Button("◀ Prev [p]", elem_id="review-prev", min_width=90)
        nxt = gr.Button("Next [n] ▶", elem_id="review-next", min_width=90)
    message = gr.Markdown(elem_id="review-message")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            better = gr.Textbox(label="Write a better answer (it becomes the chosen answer; the label's other answer "
                                      "stays rejected)", lines=3, max_lines=10, elem_id="review-better")
            save_better = gr.Button("Save better answer", elem_id="review-save-better")
        with gr.Column(scale=2):
            gr.Markdown("**Label history**")
            history = gr.Markdown(elem_id="review-history")
    with gr.Accordion("Bulk accept confident self labels", open=False):
        with gr.Row(equal_height=True):
            threshold = gr.Slider(0.5, 1.0, value=0.95, step=0.01, label="Confidence at least", scale=3)
            bulk_btn = gr.Button("Accept as human labels", variant="secondary", scale=1, elem_id="review-bulk")
        gr.Markdown("Every self-labelled pair at or above the threshold (in the round chosen above, or all rounds) "
                    "is confirmed as a human label, each with its own audit event.")
    state = gr.State(None)

    filters = [round_, source, flagged, min_conf, max_conf, search, order, page_size]
    view = [table, page_info, head, prompt, a_head, a_text, b_head, b_text, better, history, message, state]

    def round_choices(project_):
        if not project_:
            return gr.update(choices=[ANY], value=ANY)
        with actions.opened(db) as store:
            proj = store.project(project_)
            rounds = store.pair_rounds(proj.id) if proj else []
        return gr.update(choices=[ANY] + [str(r) for r in rounds])

    def apply(project_, *values, offset=0, index=0, message=""):
        *query_values, size = values
        if not project_:
            return render(db, None)
        try:
            query = query_from(*query_values)
            return render(db, load_page(db, project_, query, offset, int(size), index), message)
        except (ActionError, ValueError) as e:
            return render(db, None, f"✗ {e}")

    def on_tab(project_, *values):
        return [round_choices(project_)] + apply(project_, *values)

    tab.select(on_tab, [project] + filters, [round_] + view, show_progress="hidden", api_visibility="private")
    project.change(on_tab, [project] + filters, [round_] + view, show_progress="hidden", api_visibility="private")
    for trigger in (refresh_btn.click, search.submit, round_.input, source.input, flagged.input, order.input,
                    page_size.input, min_conf.submit, max_conf.submit):
        trigger(apply, [project] + filters, view, show_progress="hidden", api_visibility="private")

    def turn_page(project_, state_, step, *values):
        if not state_:
            return apply(project_, *values)
        offset = max(0, state_["offset"] + step * state_["page_size"])
        if step > 0 and offset >= state_["total"]:
            return render(db, state_, "This is the last page.")
        return apply(project_, *values, offset=offset)

    prev_page.click(lambda p, s, *v: turn_page(p, s, -1, *v), [project, state] + filters, view,
                    show_progress="hidden", api_visibility="private")
    next_page.click(lambda p, s, *v: turn_page(p, s, +1, *v), [project, state] + filters, view,
                    show_progress="hidden", api_visibility="private")

    def move(project_, state_, step, message=""):
        """To the next / previous pair; past the page's end the next page is loaded (see actions.next_offset)."""
        if not state_ or not state_["ids"]:
            return render(db, state_, message or "Nothing to review here.")
        index = state_["index"] + step
        query = ReviewQuery(**state_["query"])
        if 0 <= index < len(state_["ids"]):
            return render(db, {**state_, "index": index}, message)
        if index < 0:
            if state_["offset"] == 0:
                return render(db, state_, message or "This is the first pair.")
            new = load_page(db, project_, query, max(0, state_["offset"] - state_["page_size"]),
                            state_["page_size"], index=state_["page_size"] - 1)
            return render(db, new, message)
        offset = actions.next_offset(state_["offset"], state_["page_size"], state_["changes"], query)
        new = load_page(db, project_, query, offset, state_["page_size"])
        if not new["ids"]:
            return render(db, state_, (message + " " if message else "") + "That was the last pair of the queue.")
        return render(db, new, message)

    def label(project_, state_, action, text=None):
        if not state_ or not state_["ids"]:
            return render(db, state_, "Nothing to label here.")
        pair_id = state_["ids"][state_["index"]]
        with actions.opened(db) as store:
            before = store.pair(pair_id)
        try:
            result = actions.set_label(db, pair_id, action, human_response=text, actor="studio")
        except ActionError as e:
            return render(db, state_, f"✗ {e}")
        after = result["event"]
        change = [bool(before.noisy), after["new_source"], False]
        state_ = {**state_, "changes": state_["changes"] + [change]}
        done = f"Pair #{pair_id}: {after['old_label']} → **{after['new_label']}** (human)"
        return move(project_, state_, +1, done)

    def labeller(action):
        return lambda project_, state_: label(project_, state_, action)

    for button, action in ((keep, "keep"), (flip, "flip"), (tie, "tie"), (both_bad, "both_bad")):
        button.click(labeller(action), [project, state], view, show_progress="hidden", api_visibility="private")
    save_better.click(lambda p, s, t: label(p, s, "keep", t), [project, state, better], view,
                      show_progress="hidden", api_visibility="private")
    skip.click(lambda p, s: move(p, s, +1, "Skipped."), [project, state], view, show_progress="hidden",
               api_visibility="private")
    nxt.click(lambda p, s: move(p, s, +1), [project, state], view, show_progress="hidden", api_visibility="private")
    prev.click(lambda p, s: move(p, s, -1), [project, state], view, show_progress="hidden", api_visibility="private")

    def on_select(state_, evt: gr.SelectData):
        if not state_ or not state_["ids"]:
            return render(db, state_)
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return render(db, {**state_, "index": min(max(int(row), 0), len(state_["ids"]) - 1)})

    table.select(on_select, [state], view, show_progress="hidden", api_visibility="private")

    def on_bulk(project_, threshold_, *values):
        try:
            query = query_from(*values[:-1])
            n = actions.bulk_accept(db, project_, threshold_, round=query.round)["accepted"]
        except ActionError as e:
            return apply(project_, *values, message=f"✗ {e}")
        return apply(project_, *values, message=f"Accepted {n} self labels with confidence ≥ {threshold_:.2f} as "
                                               "human labels.")

    bulk_btn.click(on_bulk, [project, threshold] + filters, view, api_visibility="private")
