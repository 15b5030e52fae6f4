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
    assert cfg.learning_rate == 5e-5  # an empty learning rate is the default for LoRA, filled in when parsed
    assert parse_config("model: m\nlora:\n  enabled: false\n").learning_rate == 5e-7  # and for a full fine-tune
    assert parse_config("model: m\nlearning_rate:\n").learning_rate == 5e-5  # left empty in the YAML


def test_an_empty_learning_rate_on_the_command_line_means_the_default():
    cfg = parse_config("model: m\nlearning_rate: 1.0e-4\n", "r.yaml", ["learning_rate=", "lora.enabled=false"])
    assert cfg.learning_rate == 5e-7
    assert parse_config(cfg.to_yaml()).learning_rate == 5e-7  # the job record holds the number that trains


def test_train_settings_come_from_the_config_alone():
    """The trainer's arguments are read from the run configuration in one place: round 0 is the seed round."""
    from engine.method.trainer import TrainSettings

    cfg = parse_config(
        "model: m\nlearning_rate: 1.0e-4\nround_learning_rate: 2.0e-5\nepochs: 12\n"
        "round_epochs: 2\nbatch_size: 16\nseed: 7\nlr_scheduler: linear\nwarmup_ratio: 0.2\n"
        "train:\n  micro_batch_size: 4\n  gradient_checkpointing: true\ndtype: float32\n"
    )
    seed, round_2 = TrainSettings.for_round(cfg, 0), TrainSettings.for_round(cfg, 2, processes=2)
    assert (seed.learning_rate, seed.epochs, seed.seed, round_2.learning_rate, round_2.epochs, round_2.seed) == (
        1e-4,
        12,
        7,
        2e-5,
        2,
        9,
    )
    assert (
        round_2.beta,
        round_2.batch_size,
        round_2.micro_batch_size,
        round_2.lr_scheduler,
        round_2.warmup_ratio,
        round_2.gradient_checkpointing,
        round_2.bf16,
        round_2.processes,
    ) == (0.1, 16, 4, "linear", 0.2, True, False, 2)


@pytest.mark.parametrize(
    "text, line, key",
    [
        ("model: m\nprompt_pool: p\nbetta: 0.2\n", 3, "betta"),
        ("model: m\nprompt_pool: p\ngeneration:\n  temperature: hot\n", 4, "generation.temperature"),
        ("model: m\nprompt_pool: p\nrefine:\n  k_fraction: 1.5\n", 4, "refine.k_fraction"),
        ("model: m\nprompt_pool: p\njudge:\n  kind: oracle\n", 4, "judge.kind"),
        ("model: m\nprompt_pool: p\nrounds: two\n", 3, "rounds"),
        ("model: m\nprompt_pool: p\nlora: yes\n", 3, "lora"),
        ("prompt_pool: p\n", 1, "model"),
        ("model: m\nprompt_pool: p\nlearning_rate: 50\n", 3, "learning_rate"),
        ("model: m\nprompt_pool: p\nepochs: -1\n", 3, "epochs"),
    ],
)
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
    assert cfg.learning_rate_for_round(0) == 1e-4
    assert cfg.learning_rate_for_round(1) == cfg.learning_rate_for_round(3) == 2e-5
    same = parse_config("model: m\nlearning_rate: 1.0e-4\nprompt_pool: p\n", "r.yaml")
    assert same.learning_rate_for_round(2) == 1e-4
    same.learning_rate = 3e-4  # left empty, the rounds' rate follows the seed round's (benchmarks/tune.py varies it)
    assert same.learning_rate_for_round(2) == 3e-4
    with pytest.raises(ConfigError, match=r"r.yaml:2: key 'round_learning_rate'"):
        parse_config("model: m\nround_learning_rate: -1.0\nprompt_pool: p\n", "r.yaml")


def test_presets_paper_and_authors_code_differ_only_where_the_authors_code_does():
    """configs/spa_paper.yaml is the paper (λ = 1/2, 1/4, 1/8; 3 rounds of 8K/20K/30K; the defaults of DESIGN.md
    §1); configs/spa_authors_code.yaml is run_all.sh: extrapolation off (λ = 0) and 2 rounds, nothing else."""
    from dataclasses import asdict

    paper = load_config(ROOT / "configs" / "spa_paper.yaml")
    authors = load_config(ROOT / "configs" / "spa_authors_code.yaml")
    assert [paper.lam_for_round(i) for i in (1, 2, 3)] == [0.5, 0.25, 0.125]
    assert [authors.lam_for_round(i) for i in (1, 2)] == [0.0, 0.0]
    assert (paper.rounds, authors.rounds) == (3, 2)
    assert [paper.prompts_for_round(i) for i in (1, 2, 3)] == [8000, 20000, 30000]
    assert [authors.prompts_for_round(i) for i in (1, 2)] == [8000, 20000]
    a, b = asdict(paper), asdict(authors)
    differ = {k for k in a if a[k] != b[k]} | {f"refine.{k}" for k in a["refine"] if a["refine"][k] != b["refine"][k]}
    assert differ == {"project", "rounds", "prompts_per_round", "refine", "refine.lambdas"}
    defaults = parse_config(f"model: {paper.model}\nprompt_pool: p\nlora:\n  enabled: false\n")
    for key in (
        "beta",
        "epochs",
        "round_epochs",
        "batch_size",
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "rounds",
        "prompts_per_round",
        "generation",
        "refine",
        "judge",
    ):
        assert getattr(paper, key) == getattr(defaults, key), key


def test_every_config_key_has_help_text_and_the_form_reads_it_from_the_fields():
    from engine.config import config_fields

    keys = config_fields()
    assert [k["key"] for k in keys if not k["help"].strip()] == []
    by_key = {k["key"]: k for k in keys}
    assert by_key["refine.k_fraction"]["default"] == 0.1 and "lowest K" in by_key["refine.k_fraction"]["help"]
    assert by_key["judge.kind"]["choices"] == [
        "implicit",
        "auto",
        "density_ratio",
        "reward_model",
        "llm_judge",
        "gold",
    ]
    assert {"beta", "learning_rate", "lora.r", "generation.temperature", "refine.lambdas", "seed"} <= set(by_key)


def test_set_overrides_go_through_the_same_validation_and_name_the_key():
    text = "model: m\nprompt_pool: p\nrefine:\n  alpha: 0.2\n"
    cfg = parse_config(text, "c.yaml", ["judge.kind=gold", "refine.k_fraction=0.25", "rounds=2", "refine.lambdas=[0]"])
    assert (cfg.judge.kind, cfg.refine.k_fraction, cfg.refine.alpha, cfg.rounds) == ("gold", 0.25, 0.2, 2)
    assert cfg.lam_for_round(1) == 0.0
    for item, message in [
        ("refine.k_fraction=1.5", "key 'refine.k_fraction' must be in [0, 1)"),
        ("judge.kind=oracle", "key 'judge.kind' must be one of"),
        ("refine.k_fractoin=0.2", "unknown key 'refine.k_fractoin' (did you mean 'refine.k_fraction'"),
        ("beta", "expected key.path=value"),
        ("model.name=x", "key 'model' is not a mapping"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, "c.yaml", [item])
        assert str(caught.value).startswith(f"--set {item}") and message in str(caught.value), str(caught.value)
    with pytest.raises(ConfigError, match=r"^c.yaml:4: key 'refine.alpha' must be in \[0, 1\]"):
        parse_config(text.replace("0.2", "2"), "c.yaml", ["refine.k_fraction=0.25"])


def test_launch_run_set_rejects_a_bad_override_before_running(tmp_path, capsys):
    import launch

    db = tmp_path / "r.db"
    assert launch.main(["run", str(ROOT / "configs" / "demo.yaml"), "--db", str(db), "--set", "refine.alpha=7"]) == 2
    assert "--set refine.alpha=7: key 'refine.alpha' must be in [0, 1], got 7" in capsys.readouterr().err
    assert not db.exists()


def test_trainer_refine_settings_take_the_configs_defaults_and_checks():
    from engine.method.trainer import RefineSettings

    settings = RefineSettings.for_round(parse_config("model: m\n"), 2)
    assert (settings.k_fraction, settings.alpha, settings.warmup_fraction, settings.window) == (0.1, 0.1, 0.2, 50)
    assert settings.lam == 0.25
    with pytest.raises(ValueError, match=r"refine k_fraction must be in \[0, 1\)"):
        RefineSettings(k_fraction=1.0)
    with pytest.raises(ValueError, match="refine lam must be at least 0"):
        RefineSettings(lam=-0.5)
