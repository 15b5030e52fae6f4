"""A run's folder and the files kept in it never leak from one run (or database) into another."""

from __future__ import annotations

import json

from engine.config import parse_config
from engine.method.evaluation import EvalSettings, init_samples
from engine.runtime.checkpoints import load_policy
from engine.runtime.run_folder import run_dir


def test_run_dir_is_per_database_and_job_unless_configured(tmp_path):
    cfg = parse_config("model: m\nprompt_pool: p\nproject: demo\n", "t.yaml")
    a, b = run_dir(cfg, tmp_path / "a.db", 1), run_dir(cfg, tmp_path / "b.db", 1)
    assert a == tmp_path / "runs" / "a" / "demo" / "job_1" and a != b != run_dir(cfg, tmp_path / "b.db", 2)
    cfg.output_dir = str(tmp_path / "mine")
    assert run_dir(cfg, tmp_path / "a.db", 1) == tmp_path / "mine"


def test_init_samples_are_reused_only_for_the_same_prompts(tiny_model_dir, tmp_path):
    cfg = parse_config(f"model: {tiny_model_dir}\nprompt_pool: p\n", "t.yaml")
    policy = load_policy(cfg, str(tiny_model_dir), tmp_path, None)
    s = EvalSettings(beta=0.1, max_prompts=2, temperature=0.7, top_p=1.0, max_new_tokens=4, batch_size=2, seed=0)
    cache = tmp_path / "eval_init_samples.json"
    cache.write_text(json.dumps({"prompts": [[{"role": "user", "content": "other"}]], "texts": ["stale answer"]}))
    prompts = [[{"role": "user", "content": "ab"}], [{"role": "user", "content": "cd"}]]
    texts = init_samples(policy, prompts, s, cache)
    assert len(texts) == 2 and "stale answer" not in texts
    assert json.loads(cache.read_text()) == {"prompts": prompts, "texts": texts}
    cache.write_text(json.dumps({"prompts": prompts, "texts": ["kept", "kept too"]}))
    assert init_samples(policy, prompts, s, cache) == ["kept", "kept too"]
