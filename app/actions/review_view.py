"""The Review tab's walk through the queue: a cursor (query, page, position) and what one step or label shows.
Every step opens one Store and reads the pair once; the public endpoints in app.actions.review stay as they are."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from app.actions.lookups import ActionError, opened, pair_of, project_of
from app.actions.review import (
    LabelChange,
    ReviewQuery,
    blind_ids,
    detail_of,
    label_pair,
    next_offset,
    page_window,
    progress_of,
    queue_page,
    review_rows,
)
from app.security import STUDIO_ACTOR
from storage import LabelEvent, Store

EDGES = ("empty", "first", "last")  # why a step stayed put: no pair here, none before this one, none after it


@dataclass
class ReviewCursor:
    """The Review tab's page snapshot: the pairs it shows stay put while the person labels them, and what each
    label changed, so the next page starts where it should (next_offset)."""

    project: str
    query: ReviewQuery
    offset: int
    page_size: int
    ids: list[int]
    total: int
    index: int = 0
    changes: list[LabelChange] = field(default_factory=list)


@dataclass
class ReviewView:
    """What the Review tab draws for a cursor: the page's rows (REVIEW_COLUMNS), the current pair (as
    pair_detail), the progress per round (None for a project that does not exist), why a step stayed put (one of
    EDGES, or empty) and the label event a click wrote."""

    cursor: ReviewCursor
    rows: list[list]
    pair: dict | None
    progress: list[dict] | None
    edge: str = ""
    event: LabelEvent | None = None
    revealed: str | None = None  # the judge's label of the pair the click answered blind, now shown


def _cursor(
    store: Store,
    project: str,
    query: ReviewQuery,
    offset: int,
    page_size: int,
    index: int = 0,
    focus: int | None = None,
) -> ReviewCursor:
    """A fresh snapshot of the page at `offset`, at `index` or at the pair `focus` when the page shows it."""
    page_size, offset = page_window(page_size, offset=offset)
    pairs, total = queue_page(store, project_of(store, project), query, offset, page_size)
    ids = [p.id for p in pairs]
    index = ids.index(focus) if focus in ids else min(max(index, 0), max(len(ids) - 1, 0))
    return ReviewCursor(
        project=project, query=query, offset=offset, page_size=page_size, ids=ids, total=total, index=index
    )


def _moved(store: Store, cursor: ReviewCursor, step: int) -> tuple[ReviewCursor, str]:
    """The cursor `step` pairs on, and the edge it stopped at; past the page's end the next page is loaded,
    starting where next_offset says."""
    if not cursor.ids:
        return cursor, "empty"
    index = cursor.index + step
    if 0 <= index < len(cursor.ids):
        return replace(cursor, index=index), ""
    if index < 0:
        if cursor.offset == 0:
            return cursor, "first"
        return _cursor(
            store,
            cursor.project,
            cursor.query,
            max(0, cursor.offset - cursor.page_size),
            cursor.page_size,
            index=cursor.page_size - 1,
        ), ""
    offset = next_offset(cursor.offset, cursor.page_size, cursor.changes, cursor.query)
    fresh = _cursor(store, cursor.project, cursor.query, offset, cursor.page_size)
    return (fresh, "") if fresh.ids else (cursor, "last")


def _view(
    store: Store, cursor: ReviewCursor, edge: str = "", event: LabelEvent | None = None, revealed: str | None = None
) -> ReviewView:
    try:
        progress = progress_of(store, cursor.project)
    except ActionError:
        progress = None
    if not cursor.ids:
        return ReviewView(
            cursor=cursor, rows=[], pair=None, progress=progress, edge=edge, event=event, revealed=revealed
        )
    pairs = [store.pair(i) for i in cursor.ids]
    blind = blind_ids(store, cursor.query.order, cursor.ids)
    return ReviewView(
        cursor=cursor,
        rows=review_rows(store, pairs[0].project_id, pairs, blind),
        pair=detail_of(store, pairs[cursor.index], pairs[cursor.index].id in blind),
        progress=progress,
        edge=edge,
        event=event,
        revealed=revealed,
    )


def open_review(
    db: str,
    project: str,
    query: ReviewQuery,
    offset: int = 0,
    page_size: int = 20,
    index: int = 0,
    focus: int | None = None,
) -> ReviewView:
    """The page of the queue at `offset`, at its `index`-th pair or at the pair `focus` when it is on it."""
    with opened(db) as store:
        return _view(store, _cursor(store, project, query, offset, page_size, index, focus))


def show_review(db: str, cursor: ReviewCursor) -> ReviewView:
    """The cursor's page and pair as they are now."""
    with opened(db) as store:
        return _view(store, cursor)


def step_review(db: str, cursor: ReviewCursor, step: int) -> ReviewView:
    """The next (+1) or previous (-1) pair, loading the next or previous page past either end of this one."""
    with opened(db) as store:
        moved, edge = _moved(store, cursor, step)
        return _view(store, moved, edge)


def label_in_review(
    db: str, cursor: ReviewCursor, label: str, human_response: str | None = None, actor: str = STUDIO_ACTOR
) -> ReviewView:
    """Label the cursor's pair as `actor` (as set_label) and step to the next pair. In the audit order the label is
    an audit answer (via="audit"); the first one of a pair shown blind reveals the judge's label (`revealed`)."""
    with opened(db) as store:
        pair = pair_of(store, cursor.ids[cursor.index])
        via = "audit" if cursor.query.order == "audit" else "review"
        was_blind = bool(blind_ids(store, cursor.query.order, [pair.id]))
        event = label_pair(store, pair, label, human_response, actor=actor, via=via)
        change = LabelChange(was_flagged=bool(pair.noisy), source=event.new_source, flagged=False)
        moved, edge = _moved(store, replace(cursor, changes=cursor.changes + [change]), +1)
        return _view(store, moved, edge, event, pair.judge_label if was_blind else None)
