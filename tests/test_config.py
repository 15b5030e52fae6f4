"""Run configuration: defaults from DESIGN.md §1, and errors that name the file, line and key."""
from pathlib import Path

import pytest

from engine.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_method():
    cfg = parse_config("model: m\nprompt_pool: p.jsonl\n")
    assert (cfg.beta, cfg.epochs, cfg.round_epochs, cfg.batch_size, cfg.warmup_ratio) == (0.1, 3, 1, 32, 0.1)
    assert (cfg.generation.temperature, cfg.generation.top_p, cfg.generation.max_new_tokens) == (0.7, 1.0, 300)
    assert (cfg.refine.k_fraction, cfg.refine.alpha, cfg.refine.warmup_fraction) == (0.1, 0.1, 0.2)
    assert [cfg.lam_for_round(i) for i in (1, 2, 3, 4)] == [0.5, 0.25, 0.125, 0.125]
    assert [cfg.prompts_for_round(i) for i in (1, 2, 3)] == [8000, 20000, 30000]
    assert cfg.judge.kind == "implicit" and cfg.lora.enabled and not cfg.trust_remote_code
    assert cfg.lr == 5e-5
    cfg.lora.enabled = False
    assert cfg.lr == 5e-7


@pytest.mark.parametrize("text, line, key", [
    ("model: m\nprompt_pool: p\nbetta: 0.2\n", 3, "betta"),
    ("model: m\nprompt_pool: p\ngeneration:\n  temperature: hot\n", 4, "generation.temperature"),
    ("model: m\nprompt_pool: p\nrefine:\n  k_fraction: 1.5\n", 4, "refine.k_fraction"),
    ("model: m\nprompt_pool: p\njudge:\n  kind: oracle\n", 4, "judge.kind"),
    ("model: m\nprompt_pool: p\nrounds: two\n", 3, "rounds"),
    ("model: m\nprompt_pool: p\nlora: yes\n", 3, "lora"),
    ("prompt_pool: p\n", 1, "model"),
    ("model: m\nprompt_pool: p\nlearning_rate: 50\n", 3, "learning_rate"),
    ("model: m\nprompt_pool: p\nepochs: -1\n", 3, "epochs"),
])
def test_errors_name_line_and_key(text, line, key):
    with pytest.raises(ConfigError) as e:
        parse_config(text, "run.yaml")
    assert str(e.value).startswith(f"run.yaml:{line}: ")
    assert f"'{key}'" in str(e.value)


def test_invalid_yaml_names_the_line():
    with pytest.raises(ConfigError, match=r"run.yaml:2: not valid YAML"):
        parse_config("model: m\n  bad: [\n", "run.yaml")


def test_round_trip_through_yaml_and_shipped_configs_load():
    cfg = parse_config("model: m\nprompt_pool: p\nprompts_per_round: 64\nlearning_rate: 1e-4\n")
    again = parse_config(cfg.to_yaml())
    assert again == cfg and again.learning_rate == 1e-4
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert load_config(path).model


def test_round_learning_rate_applies_to_rounds_only_and_must_be_positive():
    cfg = parse_config("model: m\nlearning_rate: 1.0e-4\nround_learning_rate: 2.0e-5\nprompt_pool: p\n", "r.yaml")
    assert cfg.lr_for_round(0) == 1e-4 and cfg.lr_for_round(1) == cfg.lr_for_round(3) == 2e-5
    assert parse_config("model: m\nlearning_rate: 1.0e-4\nprompt_pool: p\n", "r.yaml").lr_for_round(2) == 1e-4
    with pytest.raises(ConfigError, match=r"r.yaml:2: key 'round_learning_rate'"):
        parse_config("model: m\nround_learning_rate: -1.0\nprompt_pool: p\n", "r.yaml")
