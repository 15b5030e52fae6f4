"""A round's review queue split among named people, with a chosen overlap (0: each pair to one person; 1: each pair
also to a second one), so two people do not label the same pair by accident; and each person's own progress. The
assignment is deterministic and balanced (`balanced_assignment`); a re-assignment keeps each pair with the people
who already labelled it."""

from __future__ import annotations

import re
from collections import Counter

from app.actions.lookups import ActionError, opened, project_of, run_of
from app.security import known_person


def people_list(people: str | list[str] | None, accounts: tuple[str, ...] = ()) -> list[str]:
    """The people named, in order: a list, or one text with names separated by commas or new lines. An empty or
    repeated name is refused, naming its position, and so is a name outside the studio's accounts where it has any
    (else one that is not a well-formed user name: security.known_person)."""
    if isinstance(people, str):
        names = re.split(r"[,\n]", people) if people.strip() else []
    else:
        names = list(people or [])
    out: list[str] = []
    for position, name in enumerate(names, start=1):
        name = str(name).strip()
        if not name:
            raise ActionError(f"person {position} of {len(names)} has an empty name")
        try:
            known_person(name, accounts)
        except ValueError as e:
            raise ActionError(str(e)) from None
        if name in out:
            raise ActionError(f"{name!r} is named twice")
        out.append(name)
    return out


def balanced_assignment(
    pair_ids: list[int], people: list[str], overlap: int, labelled_by: dict[int, set[str]] | None = None
) -> dict[int, list[str]]:
    """Each pair to overlap + 1 different people, the same inputs giving the same assignment. A pair keeps the
    people (of those named) who already labelled it; the other places go, pair by pair in id order, to the people
    with the fewest pairs so far (ties: the order named). Without earlier labels every person gets within one pair
    of everyone else's count."""
    per_pair = overlap + 1
    if per_pair > len(people):
        raise ValueError(f"overlap {overlap} needs {per_pair} people, not {len(people)}")
    labelled_by = labelled_by or {}
    ordered = sorted(set(pair_ids))
    kept = {pair: [p for p in people if p in labelled_by.get(pair, ())][:per_pair] for pair in ordered}
    load = Counter(person for chosen in kept.values() for person in chosen)
    position = {person: i for i, person in enumerate(people)}
    assignment = {}
    for pair in ordered:
        chosen = list(kept[pair])
        for person in sorted((p for p in people if p not in chosen), key=lambda p: (load[p], position[p])):
            if len(chosen) == per_pair:
                break
            chosen.append(person)
            load[person] += 1
        assignment[pair] = chosen
    return assignment


def assign_review(
    db: str,
    project: str,
    round_index,
    people: str | list[str],
    overlap=0,
    job_id: int | None = None,
    accounts: tuple[str, ...] = (),
) -> dict:
    """Split one round's review queue (its judged pairs; of the run job_id, default the project's newest run
    with that round) among the people named, overlap + 1 people per pair, replacing the round's assignment.
    Labels are never changed; a pair already labelled by one of the people stays theirs. Returns the run, round,
    pairs, overlap, per person their count, and `kept`: places kept for an earlier label. `accounts`: the people
    who can sign in, where the studio has accounts: a name outside them is refused."""
    names = people_list(people, accounts)
    try:
        overlap, round_index = int(overlap), int(round_index)
    except (TypeError, ValueError):
        raise ActionError(f"round and overlap must be whole numbers, not {round_index!r} and {overlap!r}") from None
    if overlap < 0:
        raise ActionError(f"overlap must be 0 or more, not {overlap}")
    if len(names) < overlap + 1:
        need = overlap + 1
        raise ActionError(
            f"overlap {overlap} gives each pair to {need} {'person' if need == 1 else 'people'}: name at least "
            f"{need} (got {len(names)})"
        )
    with opened(db) as store:
        proj = project_of(store, project)
        job_id = run_of(store, proj, job_id)
        if job_id is None:
            job_id = store.latest_round_job(proj.id, round_index)
        pair_ids = store.round_pair_ids(job_id, round_index) if job_id is not None else []
        if not pair_ids:
            where = f"run {job_id}" if job_id is not None else f"project {proj.name!r}"
            raise ActionError(f"{where} has no judged pairs in round {round_index}")
        labelled_by = {pair: set(by) for pair, by in store.labels_by_person(pair_ids).items()}
        assignment = balanced_assignment(pair_ids, names, overlap, labelled_by)
        store.assign_round(job_id, round_index, assignment)
    counts = Counter(person for chosen in assignment.values() for person in chosen)
    kept = sum(len(set(chosen) & labelled_by.get(pair, set())) for pair, chosen in assignment.items())
    return {
        "job_id": job_id,
        "round": round_index,
        "pairs": len(pair_ids),
        "overlap": overlap,
        "people": {name: counts[name] for name in names},
        "kept": kept,
    }


def person_progress(db: str, project: str, person: str | None = None) -> list[dict]:
    """Per run, round and person with an assignment (only `person`'s when given): assigned, labelled (by that
    person, not undone) and remaining."""
    with opened(db) as store:
        return store.assignment_progress(project_of(store, project).id, person)
