"""The Review tab's HTML pieces, pure functions of a pair's detail (app.actions.pair_detail): the answer and pair
headers (blind or not), the instruction checks of a text-world pair, the label history, the progress line. The seed
view shows checks and guidelines the same way."""

from __future__ import annotations

import html

NO_GUIDELINES = (
    "_No annotation guidelines for this project yet: write them below (what makes an answer better "
    "here), so every reviewer labels alike._"
)


def num(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def blind_answer_head(which: str, p: dict) -> str:
    """An answer's head while its audit pair waits for the blind answer: no badge, no reward, no log-probs."""
    side = which.lower()
    bits = ["the judge's numbers are hidden until you answer"]
    if p[f"gold_{side}"] is not None:
        bits.append(f"gold {num(p[f'gold_{side}'])}")
    if p[f"tokens_{side}"] is not None:
        bits.append(f"{p[f'tokens_{side}']} tokens")
    return f"<div class='spa-answer-head'><b>Answer {which}</b><br><small>{' · '.join(bits)}</small></div>"


def answer_head(which: str, p: dict) -> str:
    if p.get("blind"):
        return blind_answer_head(which, p)
    side = which.lower()
    reward, gold = p[f"reward_{side}"], p[f"gold_{side}"]
    preferred = p["label"] == side
    if p["human_response"] and p["label"] in ("a", "b"):
        badge = "" if preferred else "<span class='spa-badge spa-no'>rejected (the written answer is chosen)</span>"
    else:
        badge = (
            "<span class='spa-badge spa-yes'>preferred</span>"
            if preferred
            else "<span class='spa-badge spa-no'>rejected</span>"
            if p["label"] in ("a", "b")
            else ""
        )
    judge = " · judge's pick" if p["judge_label"] == side else ""
    bits = [
        f"reward {num(reward)}",
        f"logp π {num(p[f'logp_policy_{side}'], 1)}",
        f"π_init {num(p[f'logp_init_{side}'], 1)}",
    ]
    if gold is not None:
        bits.append(f"gold {num(gold)}")
    if p[f"tokens_{side}"] is not None:
        bits.append(f"{p[f'tokens_{side}']} tokens")
    return (
        f"<div class='spa-answer-head'><b>Answer {which}</b> {badge}{judge}<br><small>{' · '.join(bits)}</small></div>"
    )


def pair_head(p: dict, position: str) -> str:
    if p.get("blind"):
        return (
            f"<div class='spa-pair-head spa-blind'><b>Pair #{p['id']}</b> · round {p['round']} · {position} · "
            "<b>blind audit</b>: which answer is better? (a, b, tie or both bad) The judge's choice, confidence "
            "and the label in force show once you answer; your first answer estimates how often the self-judge is "
            "right.</div>"
        )
    flag = "<span class='spa-badge spa-flag'>⚑ flagged as likely noisy</span>" if p["noisy"] else ""
    label = "written answer" if p["human_response"] else html.escape(str(p["label"]))
    rank = "–" if p["rank"] is None else f"{100 * p['rank']:.0f}%"
    person = p.get("labelled_by")
    by = f" <span class='spa-labelled-by'>by <b>{html.escape(person)}</b></span>" if person else ""
    return (
        f"<div class='spa-pair-head'><b>Pair #{p['id']}</b> · round {p['round']} · {position} · "
        f"label <b>{label}</b> ({html.escape(str(p['label_source']))}){by} · judge confidence "
        f"<b>{num(p['confidence'])}</b> · margin {num(p['margin'])} · rank in its round <b>{rank}</b> "
        f"(0% = least sure) · ext margin {num(p['ext_margin'])} {flag}</div>"
    )


def checks_html(p: dict, side: str) -> str:
    """A text-world answer's IFEval instructions, each marked ✓ followed or ✗ not (strict, as the gold counts
    them; loose beside a strict ✗ when it differs); empty for pairs of any other world."""
    checks = p.get("instructions")
    if not checks:
        return ""
    if checks["note"]:
        return f"<div class='spa-checks'><small>{html.escape(checks['note'])}</small></div>"
    items = checks[side]
    passed = sum(c["strict"] for c in items)
    rows = "".join(
        f"<li class='spa-check' data-pass='{'yes' if c['strict'] else 'no'}'>"
        f"<span class='spa-badge {'spa-yes' if c['strict'] else 'spa-no'}'>{'✓' if c['strict'] else '✗'}</span> "
        f"{html.escape(c['description'])} <small>({html.escape(c['instruction_id'])}"
        f"{', loosely ✓' if c['loose'] and not c['strict'] else ''})</small></li>"
        for c in items
    )
    return (
        f"<div class='spa-checks'><b>Instructions followed: {passed} of {len(items)}</b> (strict)<ul>{rows}</ul></div>"
    )


def history_html(p: dict) -> str:
    if not p["events"]:
        return "_No label changes yet._"
    lines = [
        f"- {e['at'][:19].replace('T', ' ')} · {html.escape(e['actor'])}: {e['old_label']} ({e['old_source']}) → "
        f"**{e['new_label']}** ({e['new_source']}){' · ' + html.escape(e['note']) if e['note'] else ''}"
        for e in p["events"][-5:]
    ]
    return "\n".join(lines)


def prompt_text(p: dict) -> str:
    return "\n\n".join(f"[{m['role']}] {m['content']}" if len(p["prompt"]) > 1 else m["content"] for m in p["prompt"])


def progress_md(progress: list[dict] | None) -> str:
    """Reviewed / accepted / remaining per round (nothing for a project that does not exist)."""
    if progress is None:
        return ""
    if not progress:
        return "No judged pairs yet: they appear here once a run has judged its first round."
    return " · ".join(
        f"round {r['round']}: **{r['reviewed']}** reviewed, {r['accepted']} accepted, "
        f"**{r['remaining']}** of {r['n']} remaining"
        for r in progress
    )
