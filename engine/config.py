"""The run configuration: one YAML file, loaded into typed dataclasses with the defaults of DESIGN.md §1.
Unknown keys and wrong types are errors naming the file, the line and the key."""
from __future__ import annotations

import difflib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

DEMO_PREFIX = "demo:"
TEXT_PREFIX = "text:"  # a file of the text world (SmolLM2-135M-Instruct + IFEval gold): text:model, ...


class ConfigError(ValueError):
    pass


@dataclass
class LoraConfig:
    enabled: bool = True  # false: full fine-tune
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class GenerationConfig:
    backend: str = "auto"  # hf | vllm | auto (vllm when installed and CUDA is present)
    samples_per_prompt: int = 2
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 300
    batch_size: int = 32


@dataclass
class JudgeConfig:
    kind: str = "implicit"  # implicit | density_ratio | reward_model | llm_judge | gold
    reference: str = "init"  # implicit: r = β·[logp(π_{i-1}) − logp(π_init)]; "none": β·logp(π_{i-1}) (authors' ablation)
    strong_model: str = ""  # density_ratio
    weak_model: str = ""
    reward_model: str = ""  # reward_model: a sequence-classification checkpoint
    judge_model: str = ""  # llm_judge
    system_prompts: dict[str, str] = field(default_factory=dict)  # density_ratio: domain -> system prompt
    batch_size: int = 16


@dataclass
class RefineConfig:
    enabled: bool = True
    k_fraction: float = 0.1
    alpha: float = 0.1
    lambdas: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.125])
    warmup_fraction: float = 0.2
    window: int = 50  # rolling window (pairs) for the K-quantile, as in the authors' code


@dataclass
class TrainConfig:
    num_gpus: int = 1
    strategy: str = "auto"  # auto | ddp | deepspeed_zero3 | fsdp
    micro_batch_size: int = 8
    gradient_checkpointing: bool = False


@dataclass
class EvalConfig:
    max_prompts: int = 200
    samples_per_prompt: int = 1


@dataclass
class RunConfig:
    model: str = ""
    project: str = "default"
    seed_data: str = ""
    prompt_pool: str = ""
    eval_data: str = ""
    rounds: int = 3
    prompts_per_round: int | list[int] = field(default_factory=lambda: [8000, 20000, 30000])
    beta: float = 0.1
    learning_rate: float | None = None  # None: 5e-7 for a full fine-tune, 5e-5 for LoRA
    epochs: int = 3  # seed round
    round_epochs: int = 1
    round_learning_rate: float | None = None  # rounds 1..T; None: the same as learning_rate
    batch_size: int = 32  # effective batch
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.1
    review_gate: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = ""
    db: str = ""
    seed: int = 42
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-5 if self.lora.enabled else 5e-7

    def lr_for_round(self, i: int) -> float:
        """The seed round (0) trains at `lr`; rounds 1..T at round_learning_rate when it is set."""
        return self.round_learning_rate if i > 0 and self.round_learning_rate is not None else self.lr

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
    "judge.kind": ("implicit", "density_ratio", "reward_model", "llm_judge", "gold"),
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


def _build(cls, data: dict, where: str, path: str, lines: dict[str, int]):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}:{lines.get(path.rstrip('.'), 1)}: key '{path.rstrip('.')}' must be a mapping")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    values = {}
    for key, value in data.items():
        full = f"{path}{key}"
        line = lines.get(full, 1)
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{path}{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}:{line}: unknown key '{full}'{hint}")
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
            raise ConfigError(f"{where}:{line}: key '{full}' must be {_type_name(tp)}, got {value!r}")
        if full in CHOICES and value not in CHOICES[full]:
            raise ConfigError(f"{where}:{line}: key '{full}' must be one of {', '.join(CHOICES[full])}, got {value!r}")
        values[key] = value
    return cls(**values)


def _check(cfg: RunConfig, where: str, lines: dict[str, int]) -> None:
    def fail(key: str, message: str):
        raise ConfigError(f"{where}:{lines.get(key, 1)}: key '{key}' {message}")
    if not cfg.model:
        fail("model", "is required (a local path, a hub id, demo:model or text:model)")
    positive = {"rounds": cfg.rounds >= 0, "beta": cfg.beta > 0, "batch_size": cfg.batch_size > 0,
                "epochs": cfg.epochs >= 0, "round_epochs": cfg.round_epochs > 0,
                "round_learning_rate": cfg.round_learning_rate is None or cfg.round_learning_rate > 0,
                "generation.samples_per_prompt": cfg.generation.samples_per_prompt >= 2,
                "generation.max_new_tokens": cfg.generation.max_new_tokens > 0,
                "generation.temperature": cfg.generation.temperature >= 0,
                "refine.k_fraction": 0 <= cfg.refine.k_fraction < 1, "refine.alpha": 0 <= cfg.refine.alpha <= 1,
                "refine.warmup_fraction": 0 <= cfg.refine.warmup_fraction <= 1,
                "generation.top_p": 0 < cfg.generation.top_p <= 1}
    for key, ok in positive.items():
        if not ok:
            fail(key, "is out of range")
    if cfg.learning_rate is not None and cfg.learning_rate <= 0:
        fail("learning_rate", "must be positive")
    ppr = cfg.prompts_per_round
    if (isinstance(ppr, int) and ppr <= 0) or (isinstance(ppr, list) and (not ppr or min(ppr) <= 0)):
        fail("prompts_per_round", "must be a positive integer or a non-empty list of them")
    if cfg.rounds > 0 and not cfg.prompt_pool:
        fail("prompt_pool", "is required when rounds > 0")
    if cfg.judge.kind == "density_ratio" and not (cfg.judge.strong_model and cfg.judge.weak_model):
        fail("judge.kind", "density_ratio needs judge.strong_model and judge.weak_model")
    if cfg.judge.kind == "reward_model" and not cfg.judge.reward_model:
        fail("judge.kind", "reward_model needs judge.reward_model")


def parse_config(text: str, where: str = "<config>") -> RunConfig:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{where}:{line}: not valid YAML: {getattr(e, 'problem', e)}") from None
    lines = _lines(node) if node is not None else {}
    cfg = _build(RunConfig, data or {}, where, "", lines)
    _check(cfg, where, lines)
    return cfg


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    return parse_config(path.read_text(encoding="utf-8"), str(path))


def resolve_path(value: str, demo_root: Path | None, text_root: Path | None = None) -> str:
    """`demo:NAME` names a file of the embedded demo world, `text:NAME` one of the text world; anything else is a
    path or a hub id."""
    if value.startswith(TEXT_PREFIX):
        if text_root is None:
            raise ConfigError(f"'{value}' needs the text world")
        return str(text_root / value[len(TEXT_PREFIX):])
    if value.startswith(DEMO_PREFIX):
        if demo_root is None:
            raise ConfigError(f"'{value}' needs the demo world")
        return str(demo_root / value[len(DEMO_PREFIX):])
    return value


def uses_demo_world(cfg: RunConfig) -> bool:
    keys = [cfg.model, cfg.seed_data, cfg.prompt_pool, cfg.eval_data]
    return any(k.startswith(DEMO_PREFIX) for k in keys)


def uses_text_world(cfg: RunConfig) -> bool:
    keys = [cfg.model, cfg.seed_data, cfg.prompt_pool, cfg.eval_data]
    return any(k.startswith(TEXT_PREFIX) for k in keys)


def default_for(name: str):
    """The default of a top-level key (the UI shows it beside each field)."""
    f = {f.name: f for f in fields(RunConfig)}[name]
    return f.default_factory() if f.default is MISSING else f.default
