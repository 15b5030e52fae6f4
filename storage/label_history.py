"""Who labelled a pair, read from label_events: the label in force and its person, what an undo puts back. A pair's
label is its newest labelling event that stands (neither an undo nor undone), else the label it had before any
person touched it; so one person's undo never brings back a label another person had taken back, and never
takes away a label another person gave since."""

from __future__ import annotations

from dataclasses import dataclass

from storage.base import StoreBase, row_to
from storage.records import LabelEvent

TRUSTED = ("human", "gold")  # a label from these sources clears the pair's noise flag (see PairStore.set_label)
STANDING = "undoes is null and id not in (select undoes from label_events where undoes is not null)"


@dataclass(frozen=True)
class PairLabel:
    """The label fields an undo writes back onto a pair."""

    label: str | None
    label_source: str | None
    human_response: str | None
    noisy: bool | None


class LabelHistory(StoreBase):
    def labelled_since(self, event: LabelEvent) -> bool:
        """Whether a labelling event on the event's pair after it still stands: then undoing the event changes
        nothing (the later label, whoever gave it, stays in force)."""
        row = self._one(
            f"select 1 from label_events where pair_id = ? and id > ? and {STANDING} limit 1",
            [event.pair_id, event.id],
        )
        return row is not None

    def label_before(self, event: LabelEvent) -> PairLabel:
        """The pair's label once `event` is undone: the newest standing event before it, else the label the pair
        had before its first event."""
        row = self._one(
            f"select * from label_events where pair_id = ? and id < ? and {STANDING} order by id desc limit 1",
            [event.pair_id, event.id],
        )
        if row is not None:
            prev = row_to(LabelEvent, row)
            noisy = False if prev.new_source in TRUSTED else prev.old_noisy
            return PairLabel(prev.new_label, prev.new_source, prev.new_response, noisy)
        first = row_to(
            LabelEvent, self._one("select * from label_events where pair_id = ? order by id limit 1", [event.pair_id])
        )
        return PairLabel(first.old_label, first.old_source, first.old_response, first.old_noisy)

    def labelled_by(self, pair_ids: list[int]) -> dict[int, str]:
        """Who gave each pair its label in force: the actor of its newest standing event, when that event set the
        label and source the pair has now. Pairs no person labelled (self labels) are absent."""
        if not pair_ids:
            return {}
        return self._labellers(f"e.pair_id in ({','.join('?' * len(pair_ids))})", list(pair_ids))

    def project_labelled_by(self, project_id: int) -> dict[int, str]:
        """labelled_by for every pair of a project (the dataset export's `labelled_by` column)."""
        return self._labellers("p.project_id = ?", [project_id])

    def _labellers(self, where: str, params: list) -> dict[int, str]:
        rows = self.db.query(
            "select e.pair_id, e.actor, e.new_label is p.label and e.new_source is p.label_source in_force "
            f"from label_events e join pairs p on p.id = e.pair_id where {where} and e.undoes is null "
            "and e.id not in (select undoes from label_events where undoes is not null) order by e.id",
            params,
        )
        newest = {r["pair_id"]: r for r in rows}
        return {pair_id: r["actor"] for pair_id, r in newest.items() if r["in_force"]}
