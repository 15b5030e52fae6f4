"""The grown preference dataset in TRL's format with provenance columns, as JSONL, Parquet or a `datasets`
folder, with its dataset card."""

from __future__ import annotations

import json
from pathlib import Path

from engine.data.export.cards import dataset_card
from engine.data.export.records import DATA_FILES, ExportError, ExportRequest, PreferenceRow, Progress
from engine.data.export.staging import inside
from engine.runtime.auto_judge import AutoChoice, choices_from_metrics
from storage import Example, Pair, Project, Store
from storage.records import Messages

TRUSTED = ("seed", "human", "gold")  # labels that pass any confidence filter


def dataset_rows(
    store: Store, proj: Project, req: ExportRequest, report: Progress
) -> tuple[list[PreferenceRow], bool]:
    """Seed pairs (round 0: uploaded ones with source seed, ranked seed prompts with source human) and labelled
    pairs (a or b; tie and both_bad are no preference) under the label they train on (Store.as_trained), each with
    every person's latest label of it, filtered."""
    rounds = req.rounds or None
    sources = req.sources or None
    if req.job_id is not None and req.job_id not in {j.id for j in store.jobs(proj.id)}:
        raise ExportError(f"run {req.job_id} is not a run of project {req.project!r}")
    rows: list[PreferenceRow] = []
    seeds = store.examples(proj.id, "seed")
    if rounds is None or 0 in rounds:
        seed_pairs = store.seed_ordered_pairs(proj.id) if req.seed_ordered_pairs else store.seed_pairs(proj.id)
        rows += [_seed_row(store, ex) for ex in seed_pairs if sources is None or ex.label_source in sources]
    pairs = store.as_trained(store.project_pairs(proj.id, rounds, sources, req.min_confidence, req.exclude_noisy))
    labellers = store.project_labelled_by(proj.id)
    people = store.labels_by_person(p.id for p in pairs if p.label_source == "human")
    for i, p in enumerate(pairs):
        if i % 1000 == 0:
            report("rows", i, len(pairs))
        if p.label in ("a", "b") and (req.job_id is None or p.job_id == req.job_id):
            rows.append(_pair_row(p, labellers.get(p.id), people.get(p.id, {})))
    if not rows:
        raise ExportError(f"no preference pairs of project {req.project!r} match the filters")
    return rows, _is_conversational(store, proj, seeds, rows)


def _is_conversational(store: Store, proj: Project, seeds: list[Example], rows: list[PreferenceRow]) -> bool:
    """Conversational when the project's input was, or when any prompt is more than one user turn: a plain
    string would lose the turns."""
    if any(len(r.prompt) != 1 or r.prompt[0]["role"] != "user" for r in rows):
        return True
    return any(ex.conversational for ex in seeds) or any(
        ex.conversational for role in ("pool", "eval") for ex in store.examples(proj.id, role)
    )


def _messages(prompt: Messages) -> Messages:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def _seed_row(store: Store, ex: Example) -> PreferenceRow:
    """An uploaded seed pair (nobody in the studio labelled it), or a ranked seed prompt's pair with its ranker."""
    ranking = store.seed_ranking(ex.id) if ex.label_source == "human" else None
    return PreferenceRow(
        _messages(ex.prompt),
        ex.chosen,
        ex.rejected,
        0,
        ex.label_source or "seed",
        1.0,
        None,
        None,
        False,
        ranking.actor if ranking else None,
    )


def _pair_row(p: Pair, labelled_by: str | None, people: dict[str, str]) -> PreferenceRow:
    """Chosen is the labelled answer, or a person's own answer when they wrote one; rejected is the answer the
    label rejects either way. `labelled_by`: whose label is in force; where two or more people labelled the pair,
    the newest of those whose label it exports with. `people`: each person's latest label, oldest first."""
    a_wins = p.label == "a"
    rejected, rejected_score = (p.response_b, p.reward_b) if a_wins else (p.response_a, p.reward_a)
    if p.human_response:
        chosen, chosen_score = p.human_response, None
    else:
        chosen, chosen_score = (p.response_a, p.reward_a) if a_wins else (p.response_b, p.reward_b)
    confidence = 1.0 if p.label_source in TRUSTED else p.confidence
    return PreferenceRow(
        _messages(p.prompt),
        chosen,
        rejected,
        p.round,
        p.label_source or "self",
        confidence,
        chosen_score,
        rejected_score,
        bool(p.noisy),
        [who for who, said in people.items() if said == p.label][-1] if len(people) > 1 else labelled_by,
        [{"person": person, "label": label} for person, label in sorted(people.items())],
        p.job_id,
    )


def auto_judges(store: Store, rows: list[PreferenceRow]) -> dict[tuple[int, int], AutoChoice]:
    """(run, round) → the judge variant `judge.kind: auto` labelled that round with, for the rounds the rows
    come from."""
    wanted = {(r.job_id, r.round) for r in rows if r.job_id is not None}
    out = {}
    for job_id in sorted({job for job, _ in wanted}):
        for round_index, choice in choices_from_metrics(store.metrics(job_id)).items():
            if (job_id, round_index) in wanted:
                out[(job_id, round_index)] = choice
    return out


def _features(conversational: bool):
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    text = List(message) if conversational else Value("string")
    return Features(
        {
            "prompt": text,
            "chosen": text,
            "rejected": text,
            "round": Value("int64"),
            "source": Value("string"),
            "confidence": Value("float64"),
            "chosen_score": Value("float64"),
            "rejected_score": Value("float64"),
            "noisy": Value("bool"),
            "labelled_by": Value("string"),
            "labels_by_person": List({"person": Value("string"), "label": Value("string")}),
        }
    )


def write_dataset(
    tmp: Path,
    rows: list[PreferenceRow],
    conversational: bool,
    req: ExportRequest,
    proj: Project,
    report: Progress,
    judges: dict[tuple[int, int], AutoChoice] | None = None,
) -> None:
    records = [r.record(conversational) for r in rows]
    if req.format == "jsonl":
        with inside(tmp, DATA_FILES["jsonl"]).open("w", encoding="utf-8") as f:
            for i, rec in enumerate(records):
                if i % 1000 == 0:
                    report("write", i, len(records))
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    else:
        from datasets import Dataset

        report("write", 0, len(records))
        ds = Dataset.from_list(records, features=_features(conversational))
        if req.format == "parquet":
            ds.to_parquet(str(inside(tmp, DATA_FILES["parquet"])))
        else:
            ds.save_to_disk(str(tmp))
    inside(tmp, "README.md").write_text(dataset_card(proj.name, rows, conversational, req, judges), encoding="utf-8")
    report("write", len(records), len(records))
