"""The review queue and a person's labels: pages of judged pairs by filter and order, a pair with everything the
judge said about it, labels (audited in label_events), bulk accept, undo, and progress per round.

What the Review tab draws comes from here too: a `ReviewCursor` (the page snapshot it holds) and a `ReviewView`
(what it shows of it), one call per click. Each public function opens one `Store`; the `_`-prefixed ones take
the open store, so one click reads and writes on one connection."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from app.actions.job_queue import job_config
from app.actions.lookups import ActionError, opened, pair_of, project_of, shortened
from app.security import STUDIO_ACTOR
from engine.config import RunConfig
from engine.worlds import world_of
from storage import LabelEvent, Pair, Project, ReviewFilter, Store
from storage.records import LABEL_SOURCES, LABEL_VIA, LABELS, REVIEW_ORDERS

PAGE_SIZES = (20, 30, 50)
MAX_PAGE_SIZE = 200
REVIEW_ACTIONS = ("keep", "flip") + LABELS
REVIEW_COLUMNS = [
    *("id", "round", "⚑", "conf", "margin", "rank %", "label", "source", "by", "prompt", "answer A", "answer B")
]  # by: who gave the label in force (empty for a self label)
# what the judge said of a pair, and the label in force: hidden while an audit pair waits for its blind answer
JUDGE_FIELDS = (
    "judge_label",
    "confidence",
    "margin",
    "reward_a",
    "reward_b",
    "logp_policy_a",
    "logp_policy_b",
    "logp_init_a",
    "logp_init_b",
    "ext_margin",
    "noisy",
    "warmup_flag",
    "label",
    "label_source",
    "human_response",
)
BLIND = "blind"  # the label cell of a pair shown blind
RANK_BANDS = {
    "lowest 10%": (None, 0.1),
    "lowest 25%": (None, 0.25),
    "lowest 50%": (None, 0.5),
    "top 50%": (0.5, None),
    "top 25%": (0.75, None),
    "top 10%": (0.9, None),
}


@dataclass
class ReviewQuery:
    """The Review tab's filters, as the person set them (empty means any)."""

    round: int | None = None
    source: str | None = None  # one of LABEL_SOURCES
    flagged: bool | None = None
    min_confidence: float | None = None
    max_confidence: float | None = None
    search: str = ""
    order: str = "uncertain"
    job_id: int | None = None
    rank_band: str | None = None  # one of RANK_BANDS: the within-round percentile of the judge's margin

    def filter(self, project_id: int, offset: int, limit: int) -> ReviewFilter:
        if self.source is not None and self.source not in LABEL_SOURCES:
            raise ActionError(f"label source must be one of {', '.join(LABEL_SOURCES)}")
        if self.order not in REVIEW_ORDERS:
            raise ActionError(f"order must be one of {', '.join(REVIEW_ORDERS)}")
        if self.rank_band is not None and self.rank_band not in RANK_BANDS:
            raise ActionError(f"rank must be one of {', '.join(RANK_BANDS)}")
        low, high = RANK_BANDS.get(self.rank_band, (None, None))
        return ReviewFilter(
            project_id=project_id,
            job_id=self.job_id,
            round=self.round,
            label_source=self.source,
            noisy=self.flagged,
            min_confidence=self.min_confidence,
            max_confidence=self.max_confidence,
            search=(self.search or "").strip(),
            order=self.order,
            limit=limit,
            offset=offset,
            min_rank=low,
            max_rank=high,
        )


@dataclass
class ReviewPage:
    rows: list[list]  # the displayed table, REVIEW_COLUMNS
    pair_ids: list[int]
    total: int
    page: int
    pages: int
    page_size: int
    offset: int
    blind: list[int] = field(default_factory=list)  # the pairs shown blind (audit order, not yet answered)


class LabelChange(NamedTuple):
    """What one label did to a pair's place in the queue (see next_offset)."""

    was_flagged: bool
    source: str  # its label source now
    flagged: bool  # whether it is flagged now


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def rank_percent(rank: float | None) -> str:
    return "" if rank is None else f"{100 * rank:.0f}"


def review_row(p: Pair, rank: float | None = None, blind: bool = False, by: str = "") -> list:
    """A pair's row of the review table; blind: without the judge's numbers, flag, the label in force and who
    gave it. `by`: the person whose label is in force."""
    if blind:
        return [p.id, p.round, "", "", "", "", BLIND, "", "", *review_row(p)[9:]]
    return [
        p.id,
        p.round,
        "⚑" if p.noisy else "",
        _fmt(p.confidence),
        _fmt(p.margin),
        rank_percent(rank),
        p.label or "",
        p.label_source or "",
        by,
        shortened(p.prompt[-1]["content"] if p.prompt else "", 90),
        shortened(p.response_a, 70),
        shortened(p.response_b, 70),
    ]


def review_rows(store: Store, project_id: int, pairs: list[Pair], blind: set[int] = frozenset()) -> list[list]:
    ids = [p.id for p in pairs]
    ranks, people = store.pair_ranks(project_id, ids), store.labelled_by(ids)
    return [review_row(p, ranks.get(p.id), p.id in blind, people.get(p.id, "")) for p in pairs]


def blind_ids(store: Store, order: str, pair_ids: list[int]) -> set[int]:
    """The pairs shown blind: in the audit order, the audit pairs nobody has answered yet (their first audit-order
    label is the estimate's answer, so the judge's label and the label in force stay out of sight until then)."""
    if order != "audit" or not pair_ids:
        return set()
    return store.audit_unanswered(pair_ids)


def page_window(page_size: int, page: int = 0, offset: int | None = None) -> tuple[int, int]:
    """The page size (1..MAX_PAGE_SIZE) and the rows to skip: `offset` when given, else `page` whole pages."""
    page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
    return page_size, max(0, int(page) * page_size if offset is None else int(offset))


def queue_page(store: Store, proj: Project, query: ReviewQuery, offset: int, page_size: int) -> tuple[list[Pair], int]:
    return store.review_page(query.filter(proj.id, offset, page_size))


def review_page(
    db: str, project: str, query: ReviewQuery, page: int = 0, page_size: int = 20, offset: int | None = None
) -> ReviewPage:
    """One page of the review queue, flagged first then least confident by default, with its display rows.
    `offset` (rows to skip) overrides `page`. The API and the benchmark call this."""
    page_size, offset = page_window(page_size, page, offset)
    with opened(db) as store:
        proj = project_of(store, project)
        pairs, total = queue_page(store, proj, query, offset, page_size)
        blind = blind_ids(store, query.order, [p.id for p in pairs])
        rows = review_rows(store, proj.id, pairs, blind)
    return ReviewPage(
        blind=sorted(blind),
        rows=rows,
        pair_ids=[p.id for p in pairs],
        total=total,
        page=offset // page_size,
        pages=max(1, math.ceil(total / page_size)),
        page_size=page_size,
        offset=offset,
    )


def pair_detail(db: str, pair_id: int, order: str = "") -> dict:
    """A pair with everything the judge and the trainer said about it, its within-round rank (0-1) and its
    label history. In the audit order (order="audit") an audit pair nobody has answered yet is shown blind: the
    judge's fields, the label in force, rank and history are None or empty, and blind is true."""
    with opened(db) as store:
        pair = pair_of(store, pair_id)
        return detail_of(store, pair, pair.id in blind_ids(store, order, [pair.id]))


def detail_of(store: Store, pair: Pair, blind: bool = False) -> dict:
    cfg = job_config(store.job(pair.job_id))
    out = asdict(pair)
    out["instructions"] = instruction_checks(pair, cfg)
    out["blind"] = blind
    if blind:
        out.update(dict.fromkeys(JUDGE_FIELDS), events=[], rank=None, labelled_by=None)
        return out
    out["events"] = [asdict(e) for e in store.label_events(pair.id)]
    out["rank"] = store.pair_ranks(pair.project_id, [pair.id]).get(pair.id)
    out["labelled_by"] = store.labelled_by([pair.id]).get(pair.id)
    return out


def instruction_checks(pair: Pair, cfg: RunConfig | None) -> dict | None:
    """For a pair of a text-world run: the prompt's IFEval instructions and which of them each answer follows
    ({"a": [...], "b": [...], "note": ...}, each check with instruction_id, description, strict, loose); None
    for any other pair."""
    world = world_of(cfg) if cfg is not None else None
    return world.pair_checks(pair.prompt, pair.response_a, pair.response_b) if world else None


def resolve_label(pair: Pair, action: str) -> str:
    """The label an action means for this pair: keep confirms the label in force, flip prefers the other
    answer (of the label in force when it is a or b, else of the judge's)."""
    if action in LABELS:
        return action
    if action == "keep":
        if pair.label is None:
            raise ActionError(f"pair {pair.id} has no label to keep")
        return pair.label
    if action == "flip":
        base = pair.label if pair.label in ("a", "b") else pair.judge_label
        return "b" if base == "a" else "a"
    raise ActionError(f"unknown label {action!r}: use one of {', '.join(REVIEW_ACTIONS)}")


def written_label(pair: Pair, action: str) -> tuple[str, str]:
    """For a written better answer, which shown answer becomes its rejected partner, as the a/b label that
    export and training read (rejected = the answer the label does not prefer), and the audit note.

    The written answer is always the chosen one. Its partner is the answer the person's own a/b choice rejects
    (a/b pressed with it, or an earlier a/b label of theirs); without one, the answer the self-judge preferred:
    the model's best attempt, which the person replaced. A self label nobody confirmed is never carried over."""
    if action in ("a", "b"):
        preferred = action
    elif pair.label_source == "human" and pair.label in ("a", "b"):
        preferred = pair.label
    else:
        judge_pick = pair.judge_label if pair.judge_label in ("a", "b") else "a"
        preferred = "b" if judge_pick == "a" else "a"
    rejected = "B" if preferred == "a" else "A"
    return preferred, f"wrote a better answer; it is chosen, answer {rejected} is rejected"


def set_label(
    db: str,
    pair_id: int,
    label: str,
    human_response: str | None = None,
    note: str = "",
    actor: str = STUDIO_ACTOR,
    via: str = "review",
) -> dict:
    """Label a pair as a person (audited in label_events). `label` is a, b, tie, both_bad, keep or flip; with
    a written better answer, the answer is chosen and `written_label` picks its rejected partner. via="audit": the
    answer was given blind in the audit order (only a pair's first such answer counts in the audit's estimate)."""
    with opened(db) as store:
        event = label_pair(store, pair_of(store, pair_id), label, human_response, note, actor, via)
        pair = store.pair(event.pair_id)
    return {
        "pair_id": pair.id,
        "label": pair.label,
        "label_source": pair.label_source,
        "human_response": pair.human_response,
        "event": asdict(event),
    }


def label_pair(
    store: Store,
    pair: Pair,
    label: str,
    human_response: str | None = None,
    note: str = "",
    actor: str = STUDIO_ACTOR,
    via: str = "review",
) -> LabelEvent:
    action = (label or "").strip().lower().replace(" ", "_")
    if via not in LABEL_VIA:
        raise ActionError(f"via must be one of {', '.join(LABEL_VIA)}")
    if via == "audit" and not store.in_audit_sample(pair.id):
        raise ActionError(f"pair {pair.id} is in no audit sample")
    if via == "audit" and action not in LABELS and blind_ids(store, "audit", [pair.id]):
        raise ActionError(
            "in the blind audit, say which answer is better (a, b, tie or both bad): keep and flip act on a "
            "label you have not seen"
        )
    if human_response is not None:
        human_response = human_response.strip()
        if not human_response:
            raise ActionError("the better answer is empty")
        if action not in REVIEW_ACTIONS:
            raise ActionError(f"unknown label {label!r}: use one of {', '.join(REVIEW_ACTIONS)}")
        new, written_note = written_label(pair, action)
        note = note or written_note
    else:
        new = resolve_label(pair, action)
    return store.set_label(
        pair.id, new, "human", actor=actor, human_response=human_response, note=note or action, via=via
    )


def bulk_accept(
    db: str,
    project: str,
    min_confidence: float | None = None,
    round: int | None = None,
    actor: str = STUDIO_ACTOR,
    top: str | None = None,
) -> dict:
    """Accept, unread, every self label at or above a confidence, or in a top rank band of its round ("top 50%"):
    label source `accepted`, each pair audited. Training treats accepted pairs as self labels: a person did not
    read them, so they are not gold, may be flagged as noisy, and are not replayed in later rounds."""
    if min_confidence is None and top is None:
        raise ActionError("choose a confidence threshold or a rank band (top 50%, ...)")
    if min_confidence is not None and not 0.5 <= float(min_confidence) <= 1.0:
        raise ActionError("the confidence threshold must be between 0.5 and 1.0")
    if top is not None and (top not in RANK_BANDS or RANK_BANDS[top][0] is None):
        raise ActionError(f"bulk accept takes a top band: {', '.join(b for b in RANK_BANDS if b.startswith('top'))}")
    min_rank = RANK_BANDS[top][0] if top is not None else None
    with opened(db) as store:
        proj = project_of(store, project)
        n = store.bulk_accept(
            proj.id,
            None if min_confidence is None else float(min_confidence),
            round=round,
            actor=actor,
            min_rank=min_rank,
        )
    return {"accepted": n, "min_confidence": min_confidence, "top": top, "round": round}


def undo_last_label(db: str, project: str, actor: str = STUDIO_ACTOR) -> dict:
    """Revert the newest labelling action `actor` took in the project, whole: one label, or every pair of a bulk
    accept (audited as undo events). `pairs`: the pairs reverted; `kept`: pairs someone else labelled since."""
    with opened(db) as store:
        proj = project_of(store, project)
        undone = store.undo_last_label(proj.id, actor)
    if not undone.events:
        raise ActionError("nothing to undo")
    first = undone.events[0]
    return {
        "pair_id": first.pair_id,
        "label": first.new_label,
        "label_source": first.new_source,
        "undid": first.undoes,
        "pairs": [e.pair_id for e in undone.reverted],
        "kept": [e.pair_id for e in undone.kept],
        "action": undone.action_note,
    }


def review_progress(db: str, project: str) -> list[dict]:
    """Per round: judged pairs, reviewed by a person, accepted in bulk, remaining."""
    with opened(db) as store:
        return progress_of(store, project)


def progress_of(store: Store, project: str) -> list[dict]:
    return store.review_progress(project_of(store, project).id)


def pair_rounds(db: str, project: str) -> list[int]:
    """The rounds the project's judged pairs belong to; none for a project that does not exist."""
    with opened(db) as store:
        proj = store.project(project)
        return store.pair_rounds(proj.id) if proj else []


def next_offset(offset: int, page_size: int, changes: list[LabelChange], query: ReviewQuery) -> int:
    """Where the next page starts after a person worked through a page. Labelling can move a pair out of the
    filtered, ordered list (a 'self' filter no longer matches a human label; a flagged pair loses its flag
    and sorts later), which shifts every later pair up: the next page starts that many rows earlier, so no
    pair is skipped. `changes` holds (was flagged, label source now, flagged now) per pair labelled."""
    moved = 0
    for was_flagged, source, flagged in changes:
        leaves = query.source is not None and source != query.source
        leaves |= query.flagged is True and not flagged
        unflagged = was_flagged and not flagged and query.order == "uncertain"
        moved += bool(leaves or unflagged)
    return max(offset + page_size - moved, 0)


# the Review tab: a page snapshot and what it shows, one connection per click ------------------------------
