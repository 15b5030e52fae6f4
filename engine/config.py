"""The run configuration: one YAML file, loaded into typed dataclasses with the defaults of DESIGN.md §1.
Unknown keys and wrong types are errors naming the file, the line and the key."""

from __future__ import annotations

import copy
import difflib
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

DEMO_PREFIX = "demo:"
MAX_LEARNING_RATE = 1.0  # above it no optimiser step of these models means anything: a typo, refused
DEFAULT_FULL_LEARNING_RATE = 5e-7  # the authors' full fine-tune of a 7B (DESIGN.md §1)
DEFAULT_LORA_LEARNING_RATE = 5e-5  # LoRA needs a larger step
TEXT_PREFIX = "text:"  # a file of the text world (SmolLM2-135M-Instruct + IFEval gold): text:model, ...


class ConfigError(ValueError):
    pass


def _field(default, help: str, check: tuple[Callable[[object], bool], str] | None = None):
    """A config field with its help text (the form, `--help` and README read it from here, as TRL's configs do)
    and, where a value can be out of range, its check and what it must be."""
    metadata = {"help": help} if check is None else {"help": help, "check": check}
    if isinstance(default, (list, dict)) or is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


UNIT = (lambda v: 0 <= v <= 1, "in [0, 1]")
POSITIVE = (lambda v: v > 0, "positive")
LEARNING_RATE = (lambda v: v is None or 0 < v <= MAX_LEARNING_RATE, f"above 0 and at most {MAX_LEARNING_RATE:g}")
AT_LEAST_0 = (lambda v: v >= 0, "at least 0")


@dataclass
class LoraConfig:
    enabled: bool = _field(True, "train LoRA adapters; false: a full fine-tune")
    r: int = _field(16, "LoRA rank", POSITIVE)
    alpha: int = _field(32, "LoRA alpha (the adapter's scale is alpha / r)", POSITIVE)
    dropout: float = _field(0.05, "dropout on the LoRA layers", UNIT)
    target_modules: str | list[str] = _field("all-linear", "which modules get adapters: all-linear or a list of names")


@dataclass
class GenerationConfig:
    backend: str = _field("auto", "hf | vllm | auto (vllm when installed and CUDA is present)")
    samples_per_prompt: int = _field(
        2, "answers sampled per prompt; more than 2: best-of-N picks the pair", (lambda v: v >= 2, "at least 2")
    )
    temperature: float = _field(0.7, "sampling temperature", AT_LEAST_0)
    top_p: float = _field(1.0, "nucleus sampling mass", (lambda v: 0 < v <= 1, "in (0, 1]"))
    max_new_tokens: int = _field(300, "longest answer, in tokens", POSITIVE)
    batch_size: int = _field(32, "prompts per generate call", POSITIVE)


@dataclass
class JudgeConfig:
    kind: str = _field(
        "implicit",
        "implicit (SPA) | auto (the judge variant your labels support: judge-check before round 1, the blind audit "
        "after) | density_ratio | reward_model | llm_judge | gold (demo world)",
    )
    reference: str = _field(
        "init", "implicit: r = β·[logp(π_{i-1}) − logp(π_init)]; none: β·logp(π_{i-1}) (the authors' ablation)"
    )
    strong_model: str = _field("", "density_ratio: the strong model (path, hub id, or base)")
    weak_model: str = _field("", "density_ratio: the weak model; r = logp(strong) − logp(weak), no β")
    reward_model: str = _field("", "reward_model: a sequence-classification checkpoint")
    judge_model: str = _field("", "llm_judge: the model asked which answer is better (empty or base: the run's)")
    system_prompts: dict[str, str] = _field(
        {}, "density_ratio: domain (safety | reasoning | chat) -> system prompt, chosen by a regular-expression router"
    )
    batch_size: int = _field(16, "sequences scored per forward pass", POSITIVE)


@dataclass
class RefineConfig:
    enabled: bool = _field(True, "self-refinement: noise detection and soft labels while training a round")
    k_fraction: float = _field(
        0.1,
        "K: flag the pairs whose β·h_ḡ is among the lowest K of the rolling window",
        (lambda v: 0 <= v < 1, "in [0, 1)"),
    )
    alpha: float = _field(0.1, "α: a flagged pair's soft label is ỹ = 1 − α", UNIT)
    lambdas: list[float] = _field(
        [0.5, 0.25, 0.125],
        "λ per round for the extrapolated logits (1 + λ)·θ − λ·ref; the last repeats; 0: no extrapolation",
        (lambda v: all(x >= 0 for x in v), "a list of values at least 0"),
    )
    warmup_fraction: float = _field(0.2, "α = 0 for this first fraction of a round's optimiser steps", UNIT)
    window: int = _field(50, "rolling window (pairs) for the K-quantile, as in the authors' code", POSITIVE)


@dataclass
class TrainConfig:
    num_gpus: int = _field(1, "GPUs for the seed and train stages (accelerate launch past 1)", POSITIVE)
    strategy: str = _field("auto", "auto | ddp | deepspeed_zero3 | fsdp")
    micro_batch_size: int = _field(8, "pairs per forward pass; gradient accumulation makes up batch_size", POSITIVE)
    gradient_checkpointing: bool = _field(False, "trade compute for memory")
    group_by_length: bool = _field(
        False,
        "batch pairs of similar length together (transformers' "
        "LengthGroupedSampler): less padding, so less compute, in another order",
    )
    keep_top_fraction: float = _field(
        1.0,
        "train each round on only this top fraction of its self-labelled pairs by the judge's margin (the rest are "
        "dropped, not smoothed; human and gold labels always stay); 1: keep all",
        (lambda v: 0 < v <= 1, "in (0, 1]"),
    )
    replay_labelled: float = _field(
        0.0,
        "add the project's seed pairs to every round, as this fraction of the round's training pairs (drawn at "
        "random, repeated when there are fewer); 0: none",
        (lambda v: 0 <= v <= 10, "from 0 to 10"),
    )


@dataclass
class EvalConfig:
    max_prompts: int = _field(200, "held-out eval prompts scored after each round", POSITIVE)
    samples_per_prompt: int = _field(1, "answers per eval prompt", POSITIVE)


@dataclass
class RunConfig:
    model: str = _field("", "the starting (SFT) model: a local folder, a hub id, or demo:model")
    project: str = _field("default", "the studio project the run belongs to")
    seed_data: str = _field("", "human-labelled seed pairs (any importable file)")
    prompt_pool: str = _field("", "unlabelled prompts the rounds draw from")
    eval_data: str = _field("", "held-out labelled pairs for evaluation")
    rounds: int = _field(3, "SPA rounds after the seed round", AT_LEAST_0)
    prompts_per_round: int | list[int] = _field(
        [8000, 20000, 30000], "fresh prompts per round (a list: per round, the last repeats)"
    )
    beta: float = _field(0.1, "β of DPO and of the implicit reward", POSITIVE)
    learning_rate: float | None = _field(
        None,
        "the seed round's learning rate; empty: 5e-7 for a full "
        "fine-tune, 5e-5 for LoRA (filled in when the configuration is "
        "read, so it is always a number after that)",
        LEARNING_RATE,
    )
    epochs: int = _field(3, "seed round epochs", AT_LEAST_0)
    round_epochs: int = _field(1, "epochs of each SPA round", POSITIVE)
    round_learning_rate: float | None = _field(None, "rounds 1..T; empty: the same as learning_rate", LEARNING_RATE)
    batch_size: int = _field(32, "effective batch (pairs per optimiser step)", POSITIVE)
    lr_scheduler: str = _field("cosine", "cosine | linear | constant | constant_with_warmup")
    warmup_ratio: float = _field(0.1, "learning-rate warm-up, as a fraction of the steps", UNIT)
    review_gate: bool = _field(False, "pause each round after judging until a person approves the review")
    audit_size: int = _field(
        20,
        "pairs of each round drawn at random for the blind audit (the Review tab's audit order): the person's answers "
        "estimate the self-judge's accuracy with a 95% interval; 0: no audit",
        (lambda v: 0 <= v <= 10_000, "from 0 to 10000"),
    )
    lora: LoraConfig = _field(LoraConfig(), "LoRA adapters (or a full fine-tune)")
    generation: GenerationConfig = _field(GenerationConfig(), "sampling the answers")
    judge: JudgeConfig = _field(JudgeConfig(), "who labels the sampled pairs")
    refine: RefineConfig = _field(RefineConfig(), "self-refinement: de-coupled noise detection and soft labels")
    train: TrainConfig = _field(TrainConfig(), "training machinery")
    eval: EvalConfig = _field(EvalConfig(), "evaluation after each round")
    output_dir: str = _field("", "where rounds and the final model go; empty: runs/ beside the database")
    db: str = _field("", "the SQLite database; empty: spa_studio.db")
    seed: int = _field(42, "random seed of sampling, training and evaluation")
    device: str = _field("auto", "auto | cpu | cuda | mps")
    dtype: str = _field("auto", "auto | float32 | bfloat16 | float16")
    trust_remote_code: bool = _field(
        False, "run a model's own code from its folder or hub repo (off unless you trust it)"
    )

    def __post_init__(self):
        """An empty learning rate becomes the method's default for this kind of training, once, here: every
        reader (trainer, studio, cards, job record) sees the one number that trains."""
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LORA_LEARNING_RATE if self.lora.enabled else DEFAULT_FULL_LEARNING_RATE

    def learning_rate_for_round(self, round_index: int) -> float:
        """The seed round (0) trains at learning_rate; rounds 1..T at round_learning_rate when it is set (left
        empty it follows learning_rate, also when learning_rate is changed later)."""
        if round_index > 0 and self.round_learning_rate is not None:
            return self.round_learning_rate
        return self.learning_rate

    def prompts_for_round(self, i: int) -> int:
        """Prompts in round i (1-based); a list shorter than the rounds repeats its last value."""
        ppr = self.prompts_per_round
        if isinstance(ppr, int):
            return ppr
        return ppr[min(i, len(ppr)) - 1]

    def lam_for_round(self, i: int) -> float:
        lambdas = self.refine.lambdas
        return lambdas[min(i, len(lambdas)) - 1] if lambdas else 0.0

    def to_yaml(self) -> str:
        return yaml.safe_dump(asdict(self), sort_keys=False)


CHOICES = {
    "generation.backend": ("hf", "vllm", "auto"),
    "judge.kind": ("implicit", "auto", "density_ratio", "reward_model", "llm_judge", "gold"),
    "judge.reference": ("init", "none"),
    "train.strategy": ("auto", "ddp", "deepspeed_zero3", "fsdp"),
    "device": ("auto", "cpu", "cuda", "mps"),
    "dtype": ("auto", "float32", "bfloat16", "float16"),
    "lr_scheduler": ("cosine", "linear", "constant", "constant_with_warmup"),
}


def _lines(node: yaml.Node, prefix: str = "", out: dict | None = None) -> dict[str, int]:
    """Key path -> 1-based line, so errors can point into the file."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = f"{prefix}{key.value}"
            out[path] = key.start_mark.line + 1
            _lines(value, path + ".", out)
    return out


def _matches(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        k, v = typing.get_args(tp)
        return isinstance(value, dict) and all(_matches(a, k) and _matches(b, v) for a, b in value.items())
    return isinstance(value, tp)


def _type_name(tp) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build(cls, data: dict, where: str, path: str, lines: dict[str, str]):
    if not isinstance(data, dict):
        at = lines.get(path.rstrip("."), f"{where}:1")
        raise ConfigError(f"{at}: key '{path.rstrip('.')}' must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    values = {}
    for key, value in data.items():
        full = f"{path}{key}"
        at = lines.get(full, f"{where}:1")
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{path}{close[0]}'?)" if close else ""
            raise ConfigError(f"{at}: unknown key '{full}'{hint}")
        tp = hints[key]
        if is_dataclass(tp):
            values[key] = _build(tp, value or {}, where, full + ".", lines)
            continue
        if isinstance(value, int) and not isinstance(value, bool) and _matches(1.0, tp) and not _matches(1, tp):
            value = float(value)
        if isinstance(value, str) and _matches(1.0, tp):  # YAML reads 5e-7 as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if not _matches(value, tp):
            raise ConfigError(f"{at}: key '{full}' must be {_type_name(tp)}, got {value!r}")
        if full in CHOICES and value not in CHOICES[full]:
            raise ConfigError(f"{at}: key '{full}' must be one of {', '.join(CHOICES[full])}, got {value!r}")
        values[key] = value
    return cls(**values)


def field_problems(obj, prefix: str = "") -> list[tuple[str, str]]:
    """(key path, what it must be) for every field of a config dataclass tree whose value fails its check: the
    one place each range is stated (on the field), used by the loader (with lines) and by derived settings."""
    problems = []
    for f in fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            problems += field_problems(value, key + ".")
        elif "check" in f.metadata and not f.metadata["check"][0](value):
            problems.append((key, f"must be {f.metadata['check'][1]}, got {value!r}"))
    return problems


def _check(cfg: RunConfig, where: str, lines: dict[str, str]) -> None:
    def fail(key: str, message: str):
        raise ConfigError(f"{lines.get(key, f'{where}:1')}: key '{key}' {message}")

    if not cfg.model:
        fail("model", "is required (a local path, a hub id, demo:model or text:model)")
    for key, message in field_problems(cfg):
        fail(key, message)
    ppr = cfg.prompts_per_round
    if (isinstance(ppr, int) and ppr <= 0) or (isinstance(ppr, list) and (not ppr or min(ppr) <= 0)):
        fail("prompts_per_round", "must be a positive integer or a non-empty list of them")
    if cfg.judge.kind == "density_ratio" and not (cfg.judge.strong_model and cfg.judge.weak_model):
        fail("judge.kind", "density_ratio needs judge.strong_model and judge.weak_model")
    if cfg.judge.kind == "reward_model" and not cfg.judge.reward_model:
        fail("judge.kind", "reward_model needs judge.reward_model")


def parse_config(text: str, where: str = "<config>", overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The YAML text as a validated RunConfig. `overrides` are `key.path=value` (as `launch.py run --set`), applied
    on top of the text and validated the same way: an error about an overridden key names the override."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{where}:{line}: not valid YAML: {getattr(e, 'problem', e)}") from None
    lines = {key: f"{where}:{line}" for key, line in (_lines(node) if node is not None else {}).items()}
    data = data or {}
    for item in overrides:
        _override(data, lines, item)
    cfg = _build(RunConfig, data, where, "", lines)
    _check(cfg, where, lines)
    return cfg


def _override(data: dict, lines: dict[str, str], item: str) -> None:
    """Set one `key.path=value` (the value read as YAML: 0.1, true, [1, 2], text) in the parsed mapping."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item}: expected key.path=value, e.g. --set judge.kind=gold")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item}: the value is not valid YAML: {getattr(e, 'problem', e)}") from None
    *parents, last = key.split(".")
    node = data
    for depth, name in enumerate(parents):
        if not isinstance(node.get(name, {}), dict):
            raise ConfigError(f"--set {item}: key '{'.'.join(parents[: depth + 1])}' is not a mapping")
        node = node.setdefault(name, {})
    node[last] = value
    for depth in range(1, len(parents) + 1):
        lines.setdefault(".".join(parents[:depth]), f"--set {item}")
    lines[key] = f"--set {item}"


def run_config_of(job) -> RunConfig:
    """The RunConfig a run job stores (a storage.Job's config_yaml), validated; ConfigError naming the job. The one
    reading of a job's configuration: the job registry (engine.runtime.jobs) and the exporter's cards use it."""
    return parse_config(job.config_yaml or "", f"job {job.id} configuration")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    return parse_config(path.read_text(encoding="utf-8"), str(path), overrides)


def config_fields(cls=RunConfig, prefix: str = "") -> list[dict]:
    """Every key of the run configuration with its default, help text and choices, in order: what the studio's
    form, `--help` and README's table show, read from the one dataclass tree."""
    out = []
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        default = f.default_factory() if f.default is MISSING else f.default
        if is_dataclass(default):
            out += config_fields(type(default), key + ".")
            continue
        out.append(
            {"key": key, "default": default, "help": f.metadata.get("help", ""), "choices": list(CHOICES.get(key, ()))}
        )
    return out


PATH_KEYS = ("model", "seed_data", "prompt_pool", "eval_data")  # the keys that may name a world's file by its prefix


def names_prefix(cfg: RunConfig, prefix: str) -> bool:
    """Whether one of the run's files is named with this world prefix (engine.worlds looks worlds up by it)."""
    return any(getattr(cfg, key).startswith(prefix) for key in PATH_KEYS)


def default_for(name: str):
    """The default of a top-level key (the UI shows it beside each field)."""
    f = {f.name: f for f in fields(RunConfig)}[name]
    return f.default_factory() if f.default is MISSING else f.default
