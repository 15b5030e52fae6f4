"""Labels mean what the person meant, read back through the dataset export; the within-round rank, its filters
and calibration bins; undo; per-project guidelines; a new project's default configuration; and the form / YAML
merge that decides what a Run button queues (app/config_form.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import yaml

from app import actions, config_form
from app.actions import ActionError, ReviewQuery
from engine.config import ConfigError, parse_config
from storage import Example, Job, Pair, Store


def judged_round(db, project="p", n=20, round_=1) -> tuple[int, list[int]]:
    """n judged pairs of one round as the worker leaves them: margins 0.01 … n/100, the judge picks A, a gold
    reward that prefers B on every third pair."""
    store = Store(db)
    try:
        proj = store.ensure_project(project)
        store.add_examples(
            proj.id, [Example(role="seed", prompt=[{"role": "user", "content": "s"}], chosen="good", rejected="bad")]
        )
        job = store.enqueue(Job(project_id=proj.id, kind="run"))
        store.add_pairs(
            [
                Pair(
                    job_id=job,
                    round=round_,
                    project_id=proj.id,
                    prompt=[{"role": "user", "content": f"question {i}"}],
                    response_a=f"A{i}",
                    response_b=f"B{i}",
                    margin=(i + 1) / 100,
                    confidence=0.5 + (i + 1) / 1000,
                    reward_a=0.1,
                    reward_b=0.0,
                    judge_label="a",
                    label="a",
                    label_source="self",
                    gold_a=0.0 if i % 3 == 0 else 1.0,
                    gold_b=1.0 if i % 3 == 0 else 0.0,
                )
                for i in range(n)
            ]
        )
        return job, [p.id for p in store.pairs(job)]
    finally:
        store.close()


def exported(db, tmp_path, project="p") -> dict[str, dict]:
    from engine.data.export import ExportRequest, export

    out = export(str(db), ExportRequest(project=project, what="dataset", out=str(tmp_path / "export")))
    rows = (
        [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
        if (out / "train.jsonl").exists()
        else None
    )
    if rows is None:
        (path,) = [p for p in out.iterdir() if p.suffix == ".jsonl"]
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {str(r["prompt"]): r for r in rows}


def test_a_written_answer_is_exported_as_chosen_with_source_human(tmp_path):
    db = tmp_path / "s.db"
    _, ids = judged_round(db, n=4)
    # no a/b choice of the person: the judge's pick (A) becomes the rejected partner of the written answer
    actions.set_label(str(db), ids[0], "keep", human_response="the written answer")
    # the person said B is better, then wrote an answer: B's rival A is rejected
    actions.set_label(str(db), ids[1], "b")
    actions.set_label(str(db), ids[1], "keep", human_response="written after choosing B")
    # an explicit A with a written answer: B is rejected
    actions.set_label(str(db), ids[2], "a", human_response="written, A chosen over B")
    rows = exported(db, tmp_path)
    assert (rows["question 0"]["chosen"], rows["question 0"]["rejected"], rows["question 0"]["source"]) == (
        "the written answer",
        "A0",
        "human",
    )
    assert (rows["question 1"]["chosen"], rows["question 1"]["rejected"]) == ("written after choosing B", "A1")
    assert (rows["question 2"]["chosen"], rows["question 2"]["rejected"]) == ("written, A chosen over B", "B2")
    assert (rows["question 3"]["chosen"], rows["question 3"]["source"]) == ("A3", "self")
    with _opened(db) as store:
        (event,) = store.label_events(ids[0])
    assert (event.old_source, event.new_source, event.new_response) == ("self", "human", "the written answer")
    assert "it is chosen, answer A is rejected" in event.note


def _opened(db):
    return actions.opened(str(db))


def test_bulk_accept_of_the_top_half_writes_source_accepted_and_exports_it(tmp_path):
    db = tmp_path / "s.db"
    _, ids = judged_round(db, n=20)
    actions.set_label(str(db), ids[19], "b")  # a person's label is never overwritten by a bulk accept
    result = actions.bulk_accept(str(db), "p", top="top 50%")
    assert result["accepted"] == 9  # ranks 50%-100% of 20 pairs are the 10 surest; one of them is human
    with _opened(db) as store:
        sources = {p.id: p.label_source for p in store.pairs(store.jobs()[0].id)}
        events = [e for e in store.label_events() if e.new_source == "accepted"]
    assert [sources[i] for i in ids[10:19]] == ["accepted"] * 9 and sources[ids[19]] == "human"
    assert set(sources[i] for i in ids[:10]) == {"self"}
    assert len(events) == 9 and all(e.old_source == "self" and e.note == "bulk accept" for e in events)
    rows = exported(db, tmp_path)
    assert rows["question 12"]["source"] == "accepted" and rows["question 19"]["source"] == "human"
    # confidence filters still apply to accepted labels (they are not trusted like human ones)
    with pytest.raises(ActionError, match="top band"):
        actions.bulk_accept(str(db), "p", top="lowest 10%")
    with pytest.raises(ActionError, match="threshold or a rank band"):
        actions.bulk_accept(str(db), "p")


def test_rank_bands_filter_the_review_queue_within_each_round(tmp_path):
    db = tmp_path / "s.db"
    judged_round(db, n=20, round_=1)
    judged_round(db, n=10, round_=2)
    lowest = actions.review_page(str(db), "p", ReviewQuery(rank_band="lowest 10%"), page_size=50)
    # 2 of round 1's 20 pairs and 1 of round 2's 10: the least sure of each round, whatever their confidence
    assert lowest.total == 3
    assert sorted(row[1] for row in lowest.rows) == [1, 1, 2]
    assert all(float(row[5]) < 10 for row in lowest.rows)
    top = actions.review_page(str(db), "p", ReviewQuery(rank_band="top 50%", round=1), page_size=50)
    assert top.total == 10 and all(float(row[5]) >= 50 for row in top.rows)
    detail = actions.pair_detail(str(db), top.pair_ids[0])
    assert 0.5 <= detail["rank"] <= 1.0
    with pytest.raises(ActionError, match="rank must be one of"):
        actions.review_page(str(db), "p", ReviewQuery(rank_band="middle"))
    with pytest.raises(ActionError, match="order must be one of uncertain, disagree, newest, confident"):
        actions.review_page(str(db), "p", ReviewQuery(order="oldest"))


def test_calibration_bins_by_rank_count_agreement_with_gold(tmp_path):
    db = tmp_path / "s.db"
    judged_round(db, n=20)
    with _opened(db) as store:
        bins = store.rank_calibration(store.project("p").id, bins=5)
    assert [b["n"] for b in bins] == [4, 4, 4, 4, 4]
    # gold prefers B on pairs 0, 3, 6, 9, 12, 15, 18: the judge (always A) is wrong there
    assert [b["agree_gold"] for b in bins] == [2, 3, 3, 2, 3]
    assert all(b["n_gold"] == 4 for b in bins)
    assert bins[0]["min_confidence"] == pytest.approx(0.501) and bins[-1]["max_confidence"] == pytest.approx(0.52)


def test_undo_restores_the_label_the_answer_and_the_flag_and_is_audited(tmp_path):
    db = tmp_path / "s.db"
    _, ids = judged_round(db, n=3)
    with _opened(db) as store:
        store.update_pairs({ids[0]: {"noisy": True}})
    actions.set_label(str(db), ids[0], "keep", human_response="mine")
    actions.set_label(str(db), ids[1], "flip", actor="someone else")
    undone = actions.undo_last_label(str(db), "p", "studio")
    assert undone["pair_id"] == ids[0] and undone["label"] == "a" and undone["label_source"] == "self"
    with _opened(db) as store:
        first = store.pair(ids[0])
        assert (first.label, first.label_source, first.human_response, first.noisy) == ("a", "self", None, True)
        assert store.pair(ids[1]).label_source == "human"  # another reviewer's label is not theirs to undo
        last = store.label_events(ids[0])[-1]
    assert last.undoes is not None and last.note.startswith("undo of #")
    with pytest.raises(ActionError, match="nothing to undo"):
        actions.undo_last_label(str(db), "p", "studio")
    progress = actions.review_progress(str(db), "p")
    assert progress == [{"round": 1, "n": 3, "reviewed": 1, "accepted": 0, "remaining": 2}]


def test_undo_after_a_bulk_accept_reverts_every_pair_of_it_as_one_action(tmp_path):
    db = tmp_path / "s.db"
    _, ids = judged_round(db, n=10)
    actions.set_label(str(db), ids[9], "b")  # a person's label before the bulk accept: not part of it
    with _opened(db) as store:
        store.update_pairs({ids[6]: {"noisy": True}})
        before = {p.id: (p.label, p.label_source, p.noisy) for p in store.pairs(store.jobs()[0].id)}
    accepted = actions.bulk_accept(str(db), "p", top="top 50%")["accepted"]
    assert accepted == 4  # ranks 50%-100% of 10 pairs: 5, one of them human
    # another reviewer labels one accepted pair after the bulk accept: the undo must not take their label away
    actions.set_label(str(db), ids[5], "tie", actor="someone else")
    undone = actions.undo_last_label(str(db), "p", "studio")
    assert sorted(undone["pairs"]) == [ids[6], ids[7], ids[8]] and undone["kept"] == [ids[5]]
    assert undone["action"] == "bulk accept"
    with _opened(db) as store:
        after = {p.id: (p.label, p.label_source, p.noisy) for p in store.pairs(store.jobs()[0].id)}
        events = store.label_events()
    assert {i: after[i] for i in ids[6:9]} == {i: before[i] for i in ids[6:9]}
    assert after[ids[6]] == ("a", "self", True)  # the noise flag comes back too
    assert after[ids[5]] == ("tie", "human", False) and after[ids[9]] == ("b", "human", False)
    # the audit trail: one undo event per pair of the bulk accept, each naming the event it reverts, as one action
    bulk = [e for e in events if e.note == "bulk accept"]
    undos = [e for e in events if e.undoes is not None]
    assert len(bulk) == 4 and len({e.action for e in bulk}) == 1
    assert sorted(e.undoes for e in undos) == sorted(e.id for e in bulk) and len({e.action for e in undos}) == 1
    assert all("bulk accept of 4 pairs" in e.note for e in undos)
    kept = next(e for e in undos if e.pair_id == ids[5])
    assert (kept.old_label, kept.new_label, kept.new_source) == ("tie", "tie", "human") and "kept" in kept.note
    reverted = [e for e in undos if e.pair_id != ids[5]]
    assert all((e.old_source, e.new_source, e.new_label) == ("accepted", "self", "a") for e in reverted)
    # the next undo is the person's label before the bulk accept, then nothing is left
    assert actions.undo_last_label(str(db), "p", "studio")["pairs"] == [ids[9]]
    with pytest.raises(ActionError, match="nothing to undo"):
        actions.undo_last_label(str(db), "p", "studio")


def test_two_people_undo_only_their_own_labels_even_on_the_same_pair(tmp_path):
    """ana and ben label the same pair the same way; ana's undo leaves ben's label, ben's undo then brings back
    the self label (not ana's, which she took back); the label in force always names its person."""
    db = tmp_path / "s.db"
    _, ids = judged_round(db, n=3)
    actions.set_label(str(db), ids[0], "b", actor="ana")
    actions.set_label(str(db), ids[1], "b", actor="ana")
    actions.set_label(str(db), ids[0], "b", actor="ben")
    actions.bulk_accept(str(db), "p", top="top 50%", actor="carl")  # pair 2 (the surest), unread
    assert _by(db, ids) == {ids[0]: "ben", ids[1]: "ana", ids[2]: "carl"}
    rows = exported(db, tmp_path / "before")
    assert [rows[f"question {i}"]["labelled_by"] for i in range(3)] == ["ben", "ana", "carl"]
    assert [rows[f"question {i}"]["source"] for i in range(3)] == ["human", "human", "accepted"]
    assert rows["s"]["labelled_by"] is None  # an uploaded seed pair: nobody in the studio labelled it
    assert actions.undo_last_label(str(db), "p", "carl")["pairs"] == [ids[2]]
    assert _by(db, ids) == {ids[0]: "ben", ids[1]: "ana"}
    undone = actions.undo_last_label(str(db), "p", "ana")  # ana's newest: pair 1
    assert undone["pairs"] == [ids[1]] and _by(db, ids) == {ids[0]: "ben"}
    undone = actions.undo_last_label(str(db), "p", "ana")  # ana's pair 0: ben labelled it since, so it stays
    assert undone["pairs"] == [] and undone["kept"] == [ids[0]]
    with _opened(db) as store:
        assert (store.pair(ids[0]).label, store.pair(ids[0]).label_source) == ("b", "human")
    assert _by(db, ids) == {ids[0]: "ben"}
    with pytest.raises(ActionError, match="nothing to undo"):
        actions.undo_last_label(str(db), "p", "ana")
    assert actions.undo_last_label(str(db), "p", "ben")["pairs"] == [ids[0]]
    with _opened(db) as store:
        assert [(store.pair(i).label, store.pair(i).label_source) for i in ids] == [("a", "self")] * 3
        assert {e.actor for e in store.label_events()} == {"ana", "ben", "carl"}
    assert _by(db, ids) == {}


def _by(db, ids) -> dict[int, str]:
    with _opened(db) as store:
        return store.labelled_by(ids)


def test_guidelines_are_kept_per_project(tmp_path):
    db = str(tmp_path / "s.db")
    actions.create_project(db, "one")
    actions.create_project(db, "two")
    actions.save_guidelines(db, "one", "  Prefer the **shorter** correct answer.  ")
    assert actions.guidelines(db, "one") == "Prefer the **shorter** correct answer."
    assert actions.guidelines(db, "two") == ""


def test_a_new_project_gets_a_valid_configuration_of_its_own(tmp_path):
    db = str(tmp_path / "s.db")
    actions.ensure_demo_project(db)
    actions.create_project(db, "fresh")
    store = Store(db)
    proj = store.project("fresh")
    store.add_examples(
        proj.id, [Example(role="pool", prompt=[{"role": "user", "content": f"p{i}"}]) for i in range(30)]
    )
    store.close()
    cfg = parse_config(actions.latest_config(db, "fresh"))
    assert cfg.project == "fresh" and cfg.model == "demo:model" and cfg.prompts_per_round == 10
    assert (cfg.seed_data, cfg.prompt_pool, cfg.eval_data) == ("", "", "")
    with pytest.raises(ActionError, match="no seed pairs: import a seed file"):
        actions.queue_run(db, "fresh", actions.latest_config(db, "fresh"))
    store = Store(db)
    store.add_examples(
        proj.id, [Example(role="seed", prompt=[{"role": "user", "content": "q"}], chosen="c", rejected="r")]
    )
    store.close()
    queued = actions.queue_run(db, "fresh", actions.latest_config(db, "fresh"))
    assert parse_config(actions.job_status(db, queued["job_id"])["config_yaml"]).project == "fresh"


def test_config_range_checks_name_the_key():
    for text, key in (
        ("learning_rate: 50", "learning_rate"),
        ("epochs: -1", "epochs"),
        ("round_learning_rate: 0", "round_learning_rate"),
    ):
        with pytest.raises(ConfigError, match=f"key '{key}'"):
            parse_config(f"model: m\n{text}\n")
    message = config_form.named("config:3: key 'learning_rate' must be above 0 and at most 1, got 50")
    assert message.startswith("Learning rate (learning_rate): ")


def values_of(text: str) -> list:
    return config_form.form_values(parse_config(text))


def test_the_form_value_typed_last_wins_over_a_yaml_the_sync_has_not_updated():
    text = "model: demo:model\nlearning_rate: 1.0e-4\nrounds: 3\n"
    baseline = values_of(text)
    typed = list(baseline)
    index = [path for path, *_ in config_form.FORM_FIELDS].index("learning_rate")
    typed[index] = "0.0005"  # the sync of the keystrokes has not reached the YAML yet
    merged = yaml.safe_load(config_form.merged_yaml(text, baseline, typed))
    assert merged["learning_rate"] == 0.0005 and merged["rounds"] == 3


def test_queue_takes_every_form_value_as_it_is_at_the_click_whatever_the_sync_left_behind():
    """The restore-then-edit race: the hidden baseline already holds the form's values while the YAML still has
    the refused ones, so a baseline merge keeps the YAML's; Queue reads the form itself."""
    from app.run_tab import queued_config

    stale = "model: demo:model\nlearning_rate: 50\nepochs: -1\nrounds: 2\n"
    form = values_of("model: demo:model\nlearning_rate: 5.0e-4\nepochs: 3\nrounds: 4\n")
    assert yaml.safe_load(config_form.merged_yaml(stale, form, form))["learning_rate"] == 50  # what raced
    queued = parse_config(queued_config(stale, form))
    assert (queued.learning_rate, queued.epochs, queued.rounds) == (0.0005, 3, 4)
    with pytest.raises(ActionError, match=r"^Rounds \(rounds\): at least 1 round"):
        queued_config(stale, values_of("model: demo:model\nrounds: 0\n"))


def test_a_yaml_edit_wins_over_a_form_that_has_not_caught_up():
    old = "model: demo:model\nlearning_rate: 1.0e-4\nrounds: 3\n"
    baseline = values_of(old)
    edited = old.replace("rounds: 3", "rounds: 2")  # typed in the editor; the form still shows 3
    assert yaml.safe_load(config_form.merged_yaml(edited, baseline, list(baseline)))["rounds"] == 2
    assert config_form.merged_yaml(edited, baseline, list(baseline)) == edited  # untouched, comments kept


def test_a_form_value_that_does_not_parse_is_refused_with_its_label():
    text = "model: demo:model\n"
    values = values_of(text)
    values[[path for path, *_ in config_form.FORM_FIELDS].index("rounds")] = "2.5"
    with pytest.raises(ActionError, match=r"^Rounds: '2.5' is not a valid value"):
        config_form.merged_yaml(text, values_of(text), values)


def test_the_forms_help_and_ranges_are_the_config_fields_own(tmp_path):
    """Every field of the built form explains itself with its config field's help text and, where the field has
    one, its range: one source (engine/config.py), so the form cannot say another β or another K range."""
    import dataclasses

    import gradio as gr

    from app import project_tab
    from engine.config import RunConfig

    def metadata(path: str) -> dict:
        owner = RunConfig()
        *parents, leaf = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        return {f.name: f for f in dataclasses.fields(owner)}[leaf].metadata

    with gr.Blocks():
        built = project_tab.build(str(tmp_path / "s.db"), gr.Dropdown())
    assert len(built.fields) == len(config_form.FORM_FIELDS)
    for component, (path, label, *_) in zip(built.fields, config_form.FORM_FIELDS):
        help_text, check = metadata(path)["help"], metadata(path).get("check")
        assert component.label == label
        assert component.info == (f"{help_text}; must be {check[1]}" if check else help_text), path
    shown = {path: component.info for component, (path, *_) in zip(built.fields, config_form.FORM_FIELDS)}
    assert shown["beta"] == "β of DPO and of the implicit reward; must be positive"
    assert shown["refine.k_fraction"].endswith("; must be in [0, 1)")


def test_stop_says_what_it_did_and_exports_stay_off_the_run_view(tmp_path):
    from app.run_tab import job_choices, stop_message

    db = str(tmp_path / "s.db")
    actions.ensure_demo_project(db)
    with _opened(db) as store:
        demo = store.project("demo")
        run = store.enqueue(Job(project_id=demo.id, kind="run", config_yaml="model: m\n"))
        store.claim_job("w", 1, run)
        store.update_job(run, stage="train", round=2)
        export = store.enqueue(Job(project_id=demo.id, kind="export"))
    assert [job_id for _, job_id in job_choices(db, "demo")] == [run]  # the newer export is not followed here
    assert export > run
    said = stop_message(run, "running", actions.stop_run(db, run), "train", 2)
    assert "Stop requested for run" in said and "(round 2, train)" in said and "Resume" in said
    said = stop_message(export, "queued", actions.stop_run(db, export), "", None)
    assert f"Run #{export} was queued and is now stopped" in said


def _handler(blocks, elem_id: str, event: str = "click"):
    """The Python function an event of the component `elem_id` runs (the Review tab's handlers are private)."""
    ids = {i for i, block in blocks.blocks.items() if getattr(block, "elem_id", None) == elem_id}
    (fn,) = [f.fn for f in blocks.fns.values() if any(t[0] in ids and t[1] == event for t in f.targets)]
    return fn


def test_one_review_click_opens_one_database_connection(tmp_path, monkeypatch):
    """A label click writes the label, steps to the next pair and reads everything the tab redraws (the page, the
    pair, the progress per round) on one connection; so does a step to the next pair."""
    import storage.base
    from app.studio import build_app

    db = tmp_path / "s.db"
    _, ids = judged_round(db, n=4)
    blocks = build_app(str(db))
    view = _handler(blocks, "review-refresh")(
        "p", "any", "any", "any", "any", 0.5, 1.0, "", "flagged, then least confident", 20
    )
    state = view[-1]
    opened = []
    connect = storage.base.connect
    monkeypatch.setattr(storage.base, "connect", lambda path: opened.append(path) or connect(path))
    said = []
    for button in ("review-keep", "review-flip", "review-a", "review-next"):
        opened.clear()
        signed_in = [] if button == "review-next" else [SimpleNamespace(username="ana")]  # what gr.Request carries
        view = _handler(blocks, button)("p", state, *signed_in)
        state = view[-1]
        assert len(opened) == 1, button
        said.append(view[-2])
    assert said == [
        f"Pair #{ids[0]}: a (self) → **a** (human)",
        f"Pair #{ids[1]}: a (self) → **b** (human)",
        f"Pair #{ids[2]}: a (self) → **a** (human)",
        "That was the last pair of the queue.",
    ]
    with _opened(db) as store:
        assert [(store.pair(i).label, store.pair(i).label_source) for i in ids] == [
            ("a", "human"),
            ("b", "human"),
            ("a", "human"),
            ("a", "self"),
        ]
        assert [e.actor for e in store.label_events()] == ["ana"] * 3
