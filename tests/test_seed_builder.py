"""The seed builder: a seed of prompts alone is imported, the project's model samples answers for each prompt, a
person ranks them (best and worst, a better answer of their own, equal, skip, undo), and the ranked prompts become
seed pairs with source human: on real SQLite and, for sampling, the demo world's toy model."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest

from engine.data.export import ExportRequest
from engine.data.export.dataset import dataset_rows
from engine.data.importers import ImportFailed, load_examples
from engine.method.models import cpu_has_native_bf16
from engine.runtime.context import Stopped
from engine.runtime.seed_answers import SeedAnswersRequest, project_config, run_seed_answers
from storage import Job, NotFound, SeedAnswer, SeedProgress, Store
from storage.db import SCHEMA_VERSION, connect, migrate, schema_version


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "seed.db")
    yield s
    s.close()


def seed_project(store, tmp_path, prompts=("Q1?", "Q2?", "Q3?"), name="p") -> tuple[int, list[int]]:
    """A project with one uploaded seed pair and a seed prompt per text; the prompts' example ids."""
    project = store.ensure_project(name)
    rows = [{"prompt": "Uploaded?", "chosen": "Yes.", "rejected": "No."}] + [{"prompt": p} for p in prompts]
    store.add_examples(project.id, load_examples(write_jsonl(tmp_path / f"{name}.jsonl", rows), "seed").examples)
    return project.id, [ex.id for ex in store.seed_prompts(project.id)]


def answer(store, project_id: int, example_id: int, texts: list[str]) -> list[int]:
    """Model answers for one prompt, as the sampling job writes them; their ids in sample order."""
    store.add_seed_answers(
        project_id,
        example_id,
        [SeedAnswer(example_id, k, text, logp=-1.0 - k, tokens=3) for k, text in enumerate(texts)],
    )
    return [a.id for a in store.seed_answers(example_id)]


def snapshot(store) -> tuple[list, list]:
    return (
        list(store.db.query("select * from seed_answers order by id")),
        list(store.db.query("select * from seed_rankings order by id")),
    )


# import ------------------------------------------------------------------------------------------------------


def test_a_seed_of_prompts_alone_imports_as_seed_prompts(tmp_path):
    rows = [{"prompt": "Q1?"}, {"messages": [{"role": "user", "content": "Q2?"}]}]
    path = write_jsonl(tmp_path / "prompts.jsonl", rows)
    result = load_examples(path, "seed")
    assert [(e.prompt_text, e.chosen, e.rejected, e.is_seed_prompt) for e in result.examples] == [
        ("Q1?", None, None, True),
        ("Q2?", None, None, True),
    ]


def test_a_mixed_seed_file_keeps_pairs_as_pairs_and_answerless_rows_as_prompts(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("prompt,chosen,rejected\nQ1?,Yes.,No.\nQ2?,,\nQ3?, , \n")
    result = load_examples(str(path), "seed")
    assert [(e.prompt_text, e.chosen, e.rejected) for e in result.examples] == [
        ("Q1?", "Yes.", "No."),
        ("Q2?", None, None),
        ("Q3?", None, None),
    ]
    first_prompts = write_jsonl(
        tmp_path / "mixed.jsonl", [{"prompt": "Q1?"}, {"prompt": "Q2?", "chosen": "A", "rejected": "B"}]
    )
    assert [e.chosen for e in load_examples(first_prompts, "seed").examples] == [None, "A"]


def test_a_seed_row_with_one_answer_of_two_is_still_refused_naming_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "half.jsonl", [{"prompt": "Q1?"}, {"prompt": "Q2?", "chosen": "Yes."}])
    with pytest.raises(ImportFailed) as failed:
        load_examples(path, "seed")
    assert [str(i) for i in failed.value.issues] == [f"{path}:2: field 'rejected': missing required column"]


def test_eval_still_needs_pairs_and_a_duplicate_seed_prompt_is_skipped(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q1?"}, {"prompt": "Q1?"}])
    with pytest.raises(ImportFailed, match="role 'eval' needs preference pairs"):
        load_examples(path, "eval")
    result = load_examples(path, "seed")
    assert len(result.examples) == 1 and "same prompt as line 1" in result.duplicates[0].message


def test_a_database_of_version_8_gains_the_seed_tables(tmp_path):
    db = connect(tmp_path / "v8.db")
    migrate(db, target=8)
    assert "seed_answers" not in db.table_names()
    db.conn.close()
    store = Store(tmp_path / "v8.db")
    assert schema_version(store.db) == SCHEMA_VERSION and {"seed_answers", "seed_rankings"} <= set(
        store.db.table_names()
    )
    store.close()


# answers and progress --------------------------------------------------------------------------------------


def test_seed_prompts_leave_out_uploaded_pairs_and_progress_counts_each_state(store, tmp_path):
    project_id, (q1, q2, q3, _) = seed_project(store, tmp_path, ("Q1?", "Q2?", "Q3?", "Q4?"))
    assert [e.prompt_text for e in store.seed_prompts(project_id)] == ["Q1?", "Q2?", "Q3?", "Q4?"]
    assert store.seed_progress(project_id) == SeedProgress(1, 4, 4, 0, 0, 0, 0)
    a = answer(store, project_id, q1, ["A", "B"])
    answer(store, project_id, q2, ["C", "D"])
    answer(store, project_id, q3, ["E", "F"])
    store.rank_seed(project_id, q1, a[0], a[1], "ann")
    store.mark_seed(project_id, q2, "equal", "ann")
    assert store.seed_progress(project_id) == SeedProgress(
        uploaded_pairs=1, prompts=4, without_answers=1, unranked=1, ranked=1, equal=1, skipped=0
    )
    store.mark_seed(project_id, q2, "skip", "ann")
    assert store.seed_progress(project_id).skipped == 1 and store.seed_progress(project_id).seed_pairs == 2


def test_answers_are_written_once_per_prompt(store, tmp_path):
    project_id, (q1, *_) = seed_project(store, tmp_path)
    assert store.add_seed_answers(project_id, q1, [SeedAnswer(q1, 0, "A"), SeedAnswer(q1, 1, "B")]) == 2
    assert store.add_seed_answers(project_id, q1, [SeedAnswer(q1, 0, "X"), SeedAnswer(q1, 1, "Y")]) == 0
    stored = [(a.sample_index, a.text, a.source) for a in store.seed_answers(q1)]
    assert stored == [(0, "A", "model"), (1, "B", "model")]


def test_answers_are_refused_for_what_is_not_a_seed_prompt_of_the_project(store, tmp_path):
    project_id, (q1, *_) = seed_project(store, tmp_path)
    _, (other_q, *_) = seed_project(store, tmp_path, ("O?",), name="other")
    uploaded = next(e.id for e in store.examples(project_id, "seed") if e.chosen is not None)
    with pytest.raises(ValueError, match="another project"):
        store.add_seed_answers(project_id, other_q, [SeedAnswer(other_q, 0, "A")])
    with pytest.raises(ValueError, match="is a seed pair, not a seed prompt"):
        store.add_seed_answers(project_id, uploaded, [SeedAnswer(uploaded, 0, "A")])
    with pytest.raises(ValueError, match="answer goes through write_seed_answer"):
        store.add_seed_answers(project_id, q1, [SeedAnswer(q1, 0, "A", source="human")])
    assert snapshot(store) == ([], [])


# a person's decisions --------------------------------------------------------------------------------------


def test_rank_then_write_a_better_answer_then_undo_restores_the_ranking_before(store, tmp_path):
    project_id, (q1, *_) = seed_project(store, tmp_path)
    a = answer(store, project_id, q1, ["A0", "A1", "A2", "A3"])
    ranked = store.rank_seed(project_id, q1, a[2], a[0], "ann")
    assert (ranked.status, ranked.order) == ("ranked", [a[2], a[1], a[3], a[0]])
    written = store.write_seed_answer(project_id, q1, "  Mine, better.  ", a[3], "ann")
    mine = store.seed_answers(q1)[-1]
    assert (mine.text, mine.source, mine.sample_index, mine.logp) == ("Mine, better.", "human", 4, None)
    assert written.order == [mine.id, a[0], a[1], a[2], a[3]] and store.seed_ranking(q1) == written
    assert store.undo_seed(project_id, "ann").id == written.id
    assert store.seed_ranking(q1) == ranked  # the written answer stays among the answers, unranked
    assert len(store.seed_answers(q1)) == 5
    assert store.undo_seed(project_id, "ann").id == ranked.id and store.seed_ranking(q1) is None
    assert store.undo_seed(project_id, "ann") is None
    assert [r.undone_at is not None for r in store.seed_rankings(project_id)] == [True, True]


def test_undo_takes_back_only_the_actors_own_last_action(store, tmp_path):
    project_id, (q1, q2, _) = seed_project(store, tmp_path)
    a = answer(store, project_id, q1, ["A", "B"])
    answer(store, project_id, q2, ["C", "D"])
    mine = store.rank_seed(project_id, q1, a[0], a[1], "ann")
    theirs = store.mark_seed(project_id, q2, "equal", "bob")
    assert store.undo_seed(project_id, "ann").id == mine.id
    assert store.seed_ranking(q1) is None and store.seed_ranking(q2) == theirs
    over = store.rank_seed(project_id, q1, a[1], a[0], "bob")
    store.rank_seed(project_id, q1, a[0], a[1], "ann")
    store.undo_seed(project_id, "ann")
    assert store.seed_ranking(q1) == over  # bob's decision, made before ann's undone one, is in force again


def test_next_unranked_prompt_skips_decided_and_answerless_prompts_and_wraps_around(store, tmp_path):
    project_id, (q1, _, q3) = seed_project(store, tmp_path)
    a = answer(store, project_id, q1, ["A", "B"])
    answer(store, project_id, q3, ["E", "F"])
    assert store.next_unranked_seed_prompt(project_id).id == q1
    assert store.next_unranked_seed_prompt(project_id, after=q1).id == q3  # q2 has no answers yet
    assert store.next_unranked_seed_prompt(project_id, after=q3).id == q1  # wraps around
    store.rank_seed(project_id, q1, a[0], a[1], "ann")
    store.mark_seed(project_id, q3, "skip", "ann")
    assert store.next_unranked_seed_prompt(project_id) is None


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda s, p, q, a, other: s.rank_seed(p, 999_999, a[0], a[1], "ann"), "example 999999 does not exist"),
        (lambda s, p, q, a, other: s.rank_seed(p, other, a[0], a[1], "ann"), "belongs to another project"),
        (lambda s, p, q, a, other: s.rank_seed(p, q[3], a[0], a[1], "ann"), "is a seed pair, not a seed prompt"),
        (lambda s, p, q, a, other: s.rank_seed(p, q[0], a[0], a[0], "ann"), "two different answers"),
        (lambda s, p, q, a, other: s.rank_seed(p, q[0], a[0], a[2] + 100, "ann"), "is not an answer to seed prompt"),
        (lambda s, p, q, a, other: s.rank_seed(p, q[1], a[0], a[1], "ann"), "is not an answer to seed prompt"),
        (lambda s, p, q, a, other: s.rank_seed(p, q[2], a[0], a[1], "ann"), "has no answers yet"),
        (lambda s, p, q, a, other: s.rank_seed(p, q[0], a[0], a[2], "ann"), "are the same text"),
        (lambda s, p, q, a, other: s.rank_seed(p, q[0], a[0], a[1], " "), "needs an actor"),
        (lambda s, p, q, a, other: s.mark_seed(p, q[2], "equal", "ann"), "has no answers yet"),
        (lambda s, p, q, a, other: s.mark_seed(p, q[0], "ranked", "ann"), "'equal' or 'skip'"),
        (lambda s, p, q, a, other: s.write_seed_answer(p, q[0], "  ", a[0], "ann"), "the written answer is empty"),
        (lambda s, p, q, a, other: s.write_seed_answer(p, q[0], "A", a[0], "ann"), "same text as answer"),
        (lambda s, p, q, a, other: s.write_seed_answer(p, q[2], "New.", a[0], "ann"), "has no answers yet"),
        (lambda s, p, q, a, other: s.write_seed_answer(p, q[0], "New.", a[0] + 100, "ann"), "is not an answer"),
    ],
)
def test_bad_input_raises_and_changes_nothing(store, tmp_path, bad, message):
    project_id, (q1, q2, q3) = seed_project(store, tmp_path)
    a = answer(store, project_id, q1, ["A", "B", "A"])
    answer(store, project_id, q2, ["C", "D"])
    _, (other, *_) = seed_project(store, tmp_path, ("O?",), name="other")
    uploaded = next(e.id for e in store.examples(project_id, "seed") if e.chosen is not None)
    before = snapshot(store)
    with pytest.raises(ValueError, match=message):
        bad(store, project_id, (q1, q2, q3, uploaded), a, other)
    assert snapshot(store) == before


def test_an_unknown_prompt_is_not_found(store, tmp_path):
    project_id, _ = seed_project(store, tmp_path)
    with pytest.raises(NotFound):
        store.seed_prompt(project_id, 424242)


# seed pairs --------------------------------------------------------------------------------------------------


def test_seed_pairs_and_ordered_pairs_as_worked_by_hand(store, tmp_path):
    project_id, (q1, q2, q3) = seed_project(store, tmp_path)
    a = answer(store, project_id, q1, ["A0", "A1", "A2", "A3"])
    b = answer(store, project_id, q2, ["B0", "B1"])
    answer(store, project_id, q3, ["C0", "C1"])
    store.rank_seed(project_id, q1, a[2], a[0], "ann")  # A2 > {A1, A3} > A0
    store.write_seed_answer(project_id, q2, "Mine.", b[1], "ann")  # Mine > B0 > B1
    store.mark_seed(project_id, q3, "equal", "ann")  # no pair
    pairs = [(e.prompt_text, e.chosen, e.rejected, e.label_source) for e in store.seed_pairs(project_id)]
    assert pairs == [
        ("Uploaded?", "Yes.", "No.", "seed"),
        ("Q1?", "A2", "A0", "human"),
        ("Q2?", "Mine.", "B1", "human"),
    ]
    ordered = [(e.prompt_text, e.chosen, e.rejected) for e in store.seed_ordered_pairs(project_id)]
    assert ordered == [
        ("Uploaded?", "Yes.", "No."),
        ("Q1?", "A2", "A0"),
        ("Q1?", "A2", "A1"),
        ("Q1?", "A2", "A3"),
        ("Q1?", "A1", "A0"),
        ("Q1?", "A3", "A0"),
        ("Q2?", "Mine.", "B1"),
        ("Q2?", "Mine.", "B0"),
        ("Q2?", "B0", "B1"),
    ]
    assert all(e.id == q1 for e in store.seed_pairs(project_id)[1:2])


def test_the_dataset_export_holds_ranked_seed_prompts_as_human_pairs(store, tmp_path):
    project_id, (q1, *_) = seed_project(store, tmp_path)
    a = answer(store, project_id, q1, ["A0", "A1", "A2"])
    store.rank_seed(project_id, q1, a[0], a[2], "ann")
    project = store.project_by_id(project_id)

    def exported(**options):
        rows, _ = dataset_rows(
            store, project, ExportRequest("p", "dataset", str(tmp_path / "out"), **options), lambda *args: None
        )
        return [(r.prompt[0]["content"], r.chosen, r.rejected, r.round, r.source, r.confidence) for r in rows]

    assert exported() == [("Uploaded?", "Yes.", "No.", 0, "seed", 1.0), ("Q1?", "A0", "A2", 0, "human", 1.0)]
    request = ExportRequest("p", "dataset", str(tmp_path / "out"))
    # the person who ranked the prompt is its pair's labelled_by; nobody in the studio labelled an uploaded pair
    assert [r.labelled_by for r in dataset_rows(store, project, request, lambda *args: None)[0]] == [None, "ann"]
    assert exported(sources=["human"]) == [("Q1?", "A0", "A2", 0, "human", 1.0)]
    assert [r[1:3] for r in exported(seed_ordered_pairs=True)] == [
        ("Yes.", "No."),
        ("A0", "A2"),
        ("A0", "A1"),
        ("A1", "A2"),
    ]


# sampling with the project's model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    from engine.worlds.demo_world import WorldSize, build_demo_world

    return build_demo_world(
        tmp_path_factory.mktemp("w") / "world", seed=0, progress=lambda *a: None, size=WorldSize.mini()
    )


CONFIG = "model: demo:model\ngeneration:\n  temperature: 1.0\n  max_new_tokens: 12\nseed: 7\n"


def sampling_project(store, tmp_path, mini_world, monkeypatch) -> tuple[int, Job]:
    monkeypatch.setenv("SPA_DEMO_DIR", str(mini_world.root))
    pool = [json.loads(line) for line in mini_world.pool_file.read_text().splitlines()[:3]]
    project = store.ensure_project("demo-seed")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": row["prompt"]} for row in pool])
    store.add_examples(project.id, load_examples(prompts, "seed").examples)
    store.save_config(project.id, "older", "model: /nowhere\n")
    store.save_config(project.id, "demo", CONFIG)
    return project.id, Job(project_id=project.id, kind="seed-answers", id=1)


def test_the_project_config_is_its_latest_saved_one_or_the_one_named(store, tmp_path, mini_world, monkeypatch):
    project_id, _ = sampling_project(store, tmp_path, mini_world, monkeypatch)
    project = store.project_by_id(project_id)
    assert project_config(store, project).model == "demo:model"
    assert project_config(store, project, "older").model == "/nowhere"
    assert project_config(store, project, "model: other\n").model == "other"
    with pytest.raises(ValueError, match="no saved configuration named 'nope'"):
        project_config(store, project, "nope")


def test_sampling_writes_n_answers_per_prompt_with_their_logp_and_resumes_without_duplicates(
    store, tmp_path, mini_world, monkeypatch
):
    from engine.method import models, scoring

    project_id, job = sampling_project(store, tmp_path, mini_world, monkeypatch)
    reports, lines = [], []

    def stop_mid_sampling(done, total, force=False):
        if not force:
            raise Stopped()

    with pytest.raises(Stopped):  # a stop inside the chunk leaves it unwritten
        run_seed_answers(store, job, SeedAnswersRequest("demo-seed"), "sample", stop_mid_sampling, print)
    assert store.seed_progress(project_id).without_answers == 3

    run_seed_answers(
        store,
        job,
        SeedAnswersRequest("demo-seed", samples=4),
        "sample",
        lambda done, total, force=False: reports.append((done, total)),
        lines.append,
    )
    prompts = store.seed_prompts(project_id)
    answers = {ex.id: store.seed_answers(ex.id) for ex in prompts}
    assert [len(group) for group in answers.values()] == [4, 4, 4]
    assert all(a.source == "model" and a.logp is not None and a.tokens >= 1 for g in answers.values() for a in g)
    assert reports[0] == (0, 12) and reports[-1] == (12, 12)
    assert store.seed_progress(project_id).unranked == 3

    model_dir = str(mini_world.model_dir)
    model = models.load_base_model(model_dir, models.pick_device("cpu"), models.pick_dtype(models.pick_device("cpu")))
    tokenizer = models.load_tokenizer(model_dir)
    first = answers[prompts[0].id][1]
    direct = scoring.sequence_logps(model, tokenizer, [prompts[0].prompt], [first.text])[0]
    assert first.logp == pytest.approx(direct, abs=1e-4)

    before = snapshot(store)
    run_seed_answers(store, job, SeedAnswersRequest("demo-seed"), "sample", lambda *a, **k: None, lines.append)
    assert snapshot(store) == before and "has answers already" in lines[-1]


def test_answers_sampled_in_reduced_precision_are_scored_after_sampling(store, tmp_path, mini_world, monkeypatch):
    project_id, job = sampling_project(store, tmp_path, mini_world, monkeypatch)
    store.save_config(project_id, "bf16", CONFIG + "dtype: bfloat16\n")
    with pytest.warns(UserWarning, match="bfloat16 on a CPU") if not cpu_has_native_bf16() else nullcontext():
        run_seed_answers(
            store, job, SeedAnswersRequest("demo-seed", samples=2), "sample", lambda *a, **k: None, lambda line: None
        )
    answers = [a for ex in store.seed_prompts(project_id) for a in store.seed_answers(ex.id)]
    assert len(answers) == 6 and all(a.logp is not None and a.logp < 0 for a in answers)


def test_a_request_out_of_range_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        SeedAnswersRequest("p", samples=1)
    with pytest.raises(ValueError, match="above 0"):
        SeedAnswersRequest("p", temperature=0)
