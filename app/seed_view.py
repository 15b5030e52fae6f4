"""The seed builder in the studio. `build` is Review ▸ Seed: one seed prompt at a time with its answers side by side
(each with its log-prob, token count and, on the text world, its instruction checks), the project's guidelines
beside them, the person's best and worst marked by keys or buttons, a better answer written, all equal, skip, undo,
the counts, and the table of the seed pairs the seed round will train on. The Project tab's part (where the seed
prompts stand, the button that queues the `seed-answers` job) is app.seed_sampling.

Keys while the seed view is shown (never while typing in a text box): a digit 1–9 (0 for the tenth) marks the best
answer, the next digit the worst, which records the ranking and opens the next prompt: two key presses per ranked
prompt. Pressing the best's digit again takes the mark back; Esc clears both. e all equal, s skip, u undo the
person's own last decision, n the next undecided prompt. The pending marks live in the browser until the second one,
so a ranking is one request whatever the speed of the keys; decisions run one at a time (api.SEED_DECISIONS)."""

from __future__ import annotations

import html
import json

import gradio as gr
import pandas as pd

from app import actions
from app.actions import SEED_PAIR_COLUMNS, ActionError
from app.api import SEED_DECISIONS
from app.review_html import NO_GUIDELINES, checks_html
from app.security import actor_of

MAX_SLOTS = 10  # answers shown side by side; digits 1-9 and 0 reach them all
POLL_S = 1.5
KEYS = {"e": "seed-equal", "s": "seed-skip", "u": "seed-undo", "n": "seed-next"}
HINT = "Press 1–{n} for the best answer, then 1–{n} for the worst: the second press saves it."

CSS = """
.spa-hidden { display: none !important; }
.spa-seed-slot { border: 2px solid transparent; border-radius: 8px; padding: 2px; }
.spa-seed-slot.spa-seed-best { border-color: #16a34a; background: #f0fdf4; }
.spa-seed-slot.spa-seed-worst { border-color: #dc2626; background: #fef2f2; }
#seed-hint { font-size: 0.95em; padding: 2px 4px; }
"""

# Loaded in the page head beside the Review tab's keys: the pending best and worst marks, the keys, and the one
# request a complete ranking makes. A key typed while the last ranking is on its way (the prompt shown and the
# message unchanged, for up to 3 s) is dropped, so it never lands on the prompt just ranked.
KEYBOARD_JS = """
<script>
(() => {
  const keys = %s, max = %d;
  const pick = {example: null, best: null, worst: null, sent: null, sentAt: 0, sentMessage: null};
  const shown = () => { const v = document.getElementById("seed-view"); return v && v.offsetParent !== null; };
  const example = () => {
    const h = document.querySelector("#seed-head [data-example]");
    return h ? h.dataset.example : "";
  };
  const message = () => { const m = document.getElementById("seed-message"); return m ? m.innerText : ""; };
  const slot = (k) => document.getElementById("seed-slot-" + k);
  const answer = (k) => {
    const s = slot(k), h = s && s.querySelector("[data-answer]");
    return h && s.offsetParent !== null ? h.dataset.answer : null;
  };
  const count = () => { let n = 0; while (n < max && answer(n + 1)) n++; return n; };
  const busy = () => pick.sent !== null && pick.sent === example() && pick.sentMessage === message()
    && Date.now() - pick.sentAt < 3000;
  const paint = () => {
    for (let k = 1; k <= max; k++) {
      const s = slot(k);
      if (!s) continue;
      s.classList.toggle("spa-seed-best", pick.best === k);
      s.classList.toggle("spa-seed-worst", pick.worst === k);
    }
    const hint = document.getElementById("seed-hint");
    if (!hint) return;
    const n = count();
    if (pick.best !== null) hint.innerText = `Best: answer ${pick.best}. Now the worst (1–${n}); Esc clears.`;
    else if (pick.worst !== null) hint.innerText = `Worst: answer ${pick.worst}. Now the best (1–${n}); Esc clears.`;
    else hint.innerText = `Press 1–${n} for the best answer, then 1–${n} for the worst: the second press saves it.`;
  };
  const fresh = () => { if (pick.example !== example()) { pick.example = example(); pick.best = pick.worst = null; } };
  const submit = () => {
    window.spaSeedRanked = [example(), answer(pick.best), answer(pick.worst)];
    pick.sent = example(); pick.sentAt = Date.now(); pick.sentMessage = message();
    pick.best = pick.worst = null;
    paint();
    document.getElementById("seed-submit").click();
  };
  window.spaSeedPick = (kind, k) => {
    fresh();
    if (busy() || !answer(k)) return;
    const other = kind === "best" ? "worst" : "best";
    pick[kind] = pick[kind] === k ? null : k;
    if (pick[other] === k) pick[other] = null;
    paint();
    if (pick.best !== null && pick.worst !== null) submit();
  };
  window.spaSeedWorst = () => { fresh(); return pick.worst === null ? null : answer(pick.worst); };
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat || !shown()) return;
    const t = e.target;
    const typing = t && ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName) && !t.readOnly && !t.disabled;
    if (t && (t.isContentEditable || typing)) return;
    const key = (e.key || "").toLowerCase();
    if (key === "escape") { pick.best = pick.worst = null; paint(); return; }
    if (/^[0-9]$/.test(key)) {
      e.preventDefault();
      fresh();
      window.spaSeedPick(pick.best === null ? "best" : "worst", key === "0" ? 10 : Number(key));
      return;
    }
    const id = keys[key];
    if (!id || busy()) return;
    const el = document.getElementById(id);
    if (!el || el.offsetParent === null) return;
    const button = el.tagName === "BUTTON" ? el : el.querySelector("button");
    if (!button || button.disabled) return;
    e.preventDefault();
    button.click();
  });
  new MutationObserver(() => { if (pick.example !== example()) { fresh(); paint(); } })
    .observe(document.body, {childList: true, subtree: true});
})();
</script>
""" % (json.dumps(KEYS), MAX_SLOTS)

READ_RANKED_JS = "(project, picked) => [project, JSON.stringify(window.spaSeedRanked || [])]"


def progress_md(p: dict | None) -> str:
    if p is None:
        return ""
    if not p["prompts"]:
        return f"No seed prompts (a seed file of prompts without answers) here. Seed pairs: **{p['seed_pairs']}**."
    waiting = f", {p['without_answers']} waiting for answers" if p["without_answers"] else ""
    return (
        f"**{p['prompts']}** seed prompts: **{p['ranked']}** ranked, {p['equal']} equal, {p['skipped']} skipped, "
        f"**{p['unranked']}** to rank{waiting} · the seed round trains on **{p['seed_pairs']}** pairs "
        f"({p['ranked']} ranked, {p['uploaded_pairs']} uploaded)"
    )


def _answer_head(k: int, a: dict, ranking: dict | None) -> str:
    badge = ""
    if ranking and ranking["status"] == "ranked":
        if a["id"] == ranking["best_answer_id"]:
            badge = "<span class='spa-badge spa-yes'>best</span>"
        elif a["id"] == ranking["worst_answer_id"]:
            badge = "<span class='spa-badge spa-no'>worst</span>"
    bits = [f"logp {a['logp']:.1f}" if a["logp"] is not None else "logp –"]
    bits.append(f"{a['tokens']} tokens" if a["tokens"] is not None else "written by a person")
    key = f"[{k % 10}]"
    return (
        f"<div class='spa-answer-head' data-answer='{a['id']}'><b>Answer {k}</b> <small>{key}</small> {badge}"
        f"<br><small>{' · '.join(bits)}</small></div>"
    )


def _checks(a: dict) -> str:
    checks = a["checks"]
    if not checks:
        return ""
    return checks_html({"instructions": {"a": checks["checks"], "note": checks["note"]}}, "a")


def _status(view: dict) -> str:
    ranking = view["ranking"]
    if ranking is None:
        return "not decided yet"
    by = f"by {html.escape(ranking['actor'])}"
    return {"ranked": f"ranked {by}", "equal": f"all equal, {by}", "skip": f"skipped {by}"}[ranking["status"]]


def render(view: dict | None, message: str = "", table: list[list] | None = None) -> list:
    """Every output of the seed view for a prompt view (actions.seed_prompt): head, prompt, the answer slots, the
    write box's worst choice, progress, message, the seed pairs table and the prompt shown (state)."""
    answers = view["answers"] if view else []
    if not view or view["example_id"] is None:
        if view is None:
            text = "Choose a project."
        elif view["progress"]["unranked"] == 0 and view["progress"]["prompts"]:
            text = "Every seed prompt with answers is decided." + (
                " Sample answers for the rest on the Project tab." if view["progress"]["without_answers"] else ""
            )
        else:
            text = "No seed prompt with answers to rank: sample answers on the Project tab."
        head = f"<div class='spa-pair-head' data-example=''>{text}</div>"
    else:
        shown = f"; answers beyond {MAX_SLOTS} are not shown" if len(answers) > MAX_SLOTS else ""
        head = (
            f"<div class='spa-pair-head' data-example='{view['example_id']}'><b>Seed prompt #{view['example_id']}</b>"
            f" · {len(answers)} answers · {_status(view)}{shown}</div>"
        )
    slots = []
    for k in range(1, MAX_SLOTS + 1):
        if k <= len(answers):
            a = answers[k - 1]
            slots += [gr.update(visible=True), _answer_head(k, a, view["ranking"]), a["text"], _checks(a)]
        else:
            slots += [gr.update(visible=False), "", "", ""]
    prompt = "\n\n".join(m["content"] for m in view["prompt"]) if view else ""
    worst = gr.update(choices=[(str(a["position"]), a["id"]) for a in answers[:MAX_SLOTS]], value=None)
    frame = pd.DataFrame(table if table is not None else [], columns=SEED_PAIR_COLUMNS)
    return [
        head,
        prompt,
        *slots,
        worst,
        progress_md(view["progress"]) if view else "",
        message,
        frame if table is not None else gr.skip(),
        view["example_id"] if view else None,
    ]


def build(db: str, project: gr.Dropdown, tab: gr.Tab) -> None:
    """Review ▸ Seed, inside the tab `tab` (its select refreshes it)."""
    with gr.Column(elem_id="seed-view"):
        with gr.Row(equal_height=True):
            progress = gr.Markdown(elem_id="seed-progress")
            refresh = gr.Button("Refresh", size="sm", scale=0, min_width=90, elem_id="seed-refresh")
        with gr.Row(equal_height=False):
            with gr.Column(scale=4):
                head = gr.HTML(elem_id="seed-head")
                prompt = gr.Textbox(label="Prompt", interactive=False, lines=2, max_lines=6, elem_id="seed-prompt")
                gr.HTML(f"<div id='seed-hint'>{HINT.format(n='N')}</div>")
                slots, slot_outputs = [], []
                with gr.Row(equal_height=False):
                    for k in range(1, MAX_SLOTS + 1):
                        with gr.Column(
                            visible=False, min_width=230, elem_id=f"seed-slot-{k}", elem_classes="spa-seed-slot"
                        ) as column:
                            answer_head = gr.HTML()
                            text = gr.Textbox(
                                show_label=False, interactive=False, lines=5, max_lines=12, elem_id=f"seed-answer-{k}"
                            )
                            checks = gr.HTML(elem_id=f"seed-checks-{k}")
                            with gr.Row():
                                best = gr.Button("Best", size="sm", variant="primary", elem_id=f"seed-best-{k}")
                                worst = gr.Button("Worst", size="sm", variant="stop", elem_id=f"seed-worst-{k}")
                        slots.append((k, best, worst))
                        slot_outputs += [column, answer_head, text, checks]
            with gr.Column(scale=1, min_width=240):
                gr.Markdown("**Annotation guidelines**")
                guide = gr.Markdown(NO_GUIDELINES, elem_id="seed-guidelines")
        with gr.Row(elem_id="seed-actions"):
            equal = gr.Button("All equal [e]", elem_id="seed-equal", min_width=110)
            skip = gr.Button("Skip [s]", elem_id="seed-skip", min_width=90)
            undo = gr.Button("Undo my last [u]", elem_id="seed-undo", min_width=130)
            nxt = gr.Button("Next undecided [n] ▶", elem_id="seed-next", min_width=150)
            submit = gr.Button("Save ranking", elem_id="seed-submit", elem_classes="spa-hidden")
        picked = gr.Textbox(visible=False)  # [example, best, worst] from the browser's marks (READ_RANKED_JS)
        message = gr.Markdown(elem_id="seed-message")
        with gr.Row(equal_height=True):
            better = gr.Textbox(
                label="Write a better answer: it is saved as the best, and the answer chosen here as the worst",
                lines=2,
                max_lines=8,
                scale=4,
                elem_id="seed-better",
            )
            worst_of_written = gr.Radio([], label="The worst answer", scale=2, elem_id="seed-better-worst")
            save_better = gr.Button("Save better answer", scale=1, min_width=140, elem_id="seed-save-better")
        gr.Markdown("**Seed pairs from ranked prompts** (best over worst: what the seed round trains on)")
        table = gr.Dataframe(
            pd.DataFrame(columns=SEED_PAIR_COLUMNS),
            interactive=False,
            wrap=True,
            max_height=320,
            elem_id="seed-pairs",
            column_widths=["80px", "26%", "26%", "26%", "80px", "140px"],
        )
    current = gr.State(None)
    view = [head, prompt, *slot_outputs, worst_of_written, progress, message, table, current]

    def show(project_, example_id=None, after=None, message_=""):
        if not project_:
            return render(None, message_, [])
        try:
            found = actions.seed_prompt(db, project_, example_id, after)
            rows = actions.seed_pair_table(actions.seed_pair_rows(db, project_))
        except ActionError as e:
            return render(None, f"✗ {e}", [])
        return render(found, message_, rows)

    def on_open(project_, current_):
        """The prompt shown before, while it is still undecided; else the next undecided one."""
        try:
            text = actions.guidelines(db, project_) if project_ else ""
            still = current_ is not None and actions.seed_prompt(db, project_, current_)["ranking"] is None
        except ActionError:
            text, still = "", False
        return [text or NO_GUIDELINES] + show(project_, current_ if still else None)

    for trigger in (tab.select, project.change, refresh.click):
        trigger(on_open, [project, current], [guide] + view, show_progress="hidden", api_visibility="private")

    def decided(project_, result: dict, what: str) -> list:
        p = result["progress"]
        counts = f"{p['ranked']} ranked, {p['unranked']} to rank."
        following = result["next_example_id"]
        if following is None:
            return show(project_, None, None, f"{what} {counts} Every prompt with answers is decided.")
        return show(project_, following, None, f"{what} {counts}")

    def on_rank(project_, picked_, request: gr.Request):
        try:
            example_id, best_id, worst_id = json.loads(picked_ or "[]")
        except ValueError:
            return show(project_, None, None, "✗ Mark the best and the worst answer first.")
        try:
            result = actions.rank_seed(db, project_, example_id, best_id, worst_id, actor_of(request))
        except ActionError as e:
            return show(project_, example_id or None, None, f"✗ {e}")
        where = {a["id"]: a["position"] for a in actions.seed_prompt(db, project_, example_id)["answers"]}
        return decided(
            project_,
            result,
            f"Prompt #{example_id}: answer {where[int(best_id)]} best, answer {where[int(worst_id)]} worst.",
        )

    def on_mark(status: str):
        def mark(project_, current_, request: gr.Request):
            if current_ is None:
                return show(project_, None, None, "Nothing to mark here.")
            try:
                result = actions.mark_seed(db, project_, current_, status, actor_of(request))
            except ActionError as e:
                return show(project_, current_, None, f"✗ {e}")
            what = "all answers equal (no pair)" if status == "equal" else "skipped (left out of the seed)"
            return decided(project_, result, f"Prompt #{current_}: {what}.")

        return mark

    def on_write(project_, current_, text, worst_id, request: gr.Request):
        if current_ is None:
            return show(project_, None, None, "No prompt to answer here.") + [gr.skip()]
        if worst_id is None:
            return show(project_, current_, None, "✗ Choose the worst answer beside the written one.") + [gr.skip()]
        try:
            result = actions.write_seed_answer(db, project_, current_, text, worst_id, actor_of(request))
        except ActionError as e:
            return show(project_, current_, None, f"✗ {e}") + [gr.skip()]
        return decided(project_, result, f"Prompt #{current_}: your answer is the best.") + [""]

    def on_undo(project_, current_, request: gr.Request):
        try:
            result = actions.undo_seed(db, project_, actor_of(request))
        except ActionError as e:
            return show(project_, current_, None, f"✗ {e}")
        if result["undone"] is None:
            return show(project_, current_, None, "Nothing of yours to undo.")
        ranking = result["ranking"]
        now = f"back to {ranking['status']} by {ranking['actor']}" if ranking else "undecided again"
        return show(
            project_,
            result["example_id"],
            None,
            f"Undone: your {result['undone']['status']} of prompt #{result['example_id']}; it is {now}.",
        )

    decision = dict(
        show_progress="hidden",
        api_visibility="private",
        trigger_mode="multiple",
        concurrency_limit=1,
        concurrency_id=SEED_DECISIONS,
    )
    submit.click(on_rank, [project, picked], view, js=READ_RANKED_JS, **decision)
    equal.click(on_mark("equal"), [project, current], view, **decision)
    skip.click(on_mark("skip"), [project, current], view, **decision)
    undo.click(on_undo, [project, current], view, **decision)
    save_better.click(on_write, [project, current, better, worst_of_written], view + [better], **decision)
    nxt.click(
        lambda p, c: show(p, None, c), [project, current], view, show_progress="hidden", api_visibility="private"
    )
    for k, best, worst in slots:
        best.click(None, js=f"() => window.spaSeedPick('best', {k})", api_visibility="private")
        worst.click(None, js=f"() => window.spaSeedPick('worst', {k})", api_visibility="private")

    def on_select(project_, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        rows = actions.seed_pair_rows(db, project_) if project_ else []
        if not 0 <= int(row) < len(rows):
            return show(project_)
        return show(project_, rows[int(row)]["example_id"], None, "A ranked prompt: rank it again to change its pair.")

    table.select(on_select, [project], view, show_progress="hidden", api_visibility="private")
