"""The round table a run prints: each world's gold metrics under their own columns, values in the right cells."""

from engine.data.report import round_table
from storage import Job, Metric, Store


def table_cells(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


def run_with(tmp_path, metrics: list[tuple[str, int, float]]):
    store = Store(tmp_path / "r.db")
    project = store.ensure_project("p")
    job = store.enqueue(Job(project_id=project.id, kind="run"))
    store.add_metrics([Metric(job_id=job, name=n, round=r, value=v) for n, r, v in metrics])
    return store, job


def test_the_text_world_shows_its_ifeval_columns_and_not_the_demo_worlds(tmp_path):
    store, job = run_with(
        tmp_path,
        [
            ("text/eval/prompt_strict", 0, 0.292),
            ("text/eval/instruction_loose", 0, 0.39),
            ("text/eval/win_rate_vs_init", 1, 0.479),
            ("text/eval/prompt_strict", 1, 0.1666),
            ("text/eval/init/prompt_strict", 0, 0.25),
            ("round/pairs", 1, 50),
            ("round/self_label_accuracy", 1, 0.4286),
        ],
    )
    rows = table_cells(round_table(store, job))
    assert [r["round"] for r in rows] == ["0", "1"]
    assert rows[0]["IFEval prompt strict"] == "0.292" and rows[1]["IFEval prompt strict"] == "0.167"
    assert rows[0]["IFEval instr. loose"] == "0.390" and rows[1]["IFEval instr. loose"] == ""
    assert rows[1]["win rate vs SmolLM2"] == "0.479"
    assert rows[1]["pairs"] == "50" and rows[1]["self-label acc (gold)"] == "0.429"
    assert "gold score" not in rows[0]
    store.close()


def test_the_demo_world_keeps_its_gold_score_columns(tmp_path):
    store, job = run_with(
        tmp_path, [("eval/gold_score", 0, 0.5), ("eval/gold_score", 1, 0.5625), ("eval/win_rate_vs_init", 1, 0.61)]
    )
    rows = table_cells(round_table(store, job))
    assert [(r["gold score"], r["win rate vs SFT"]) for r in rows] == [("0.500", ""), ("0.562", "0.610")]
    assert "IFEval prompt strict" not in rows[0]
    store.close()
