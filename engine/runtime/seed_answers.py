"""The seed builder's sampling job (engine.runtime.jobs.SEED_ANSWERS): N answers per seed prompt (a seed
example without a pair) from the project's model, each with its log-prob, for a person to pick the best and the
worst (storage.seed).

The model, its dtype and device, and the generation settings come from one of the project's saved configurations
(the latest unless the request names another, or gives YAML of its own): the person ranks answers of the model the
run will start from. Prompts are sampled in chunks and each prompt's answers are written in one transaction, so a
stopped or killed job resumes at the first prompt without answers and never adds a second set.

Module level imports nothing heavy: the worker and the studio read the request type and the stage names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from engine.config import RunConfig
    from engine.method.generation import SamplingSettings
    from storage import Example, Job, Project, SeedAnswer, Store

Progress = Callable[..., None]  # (done, total, force=False): the runtime's JobProgress, which raises Stopped

STAGES = ("sample",)
PROMPTS_PER_CHUNK = 16  # prompts sampled together; a resumed job redoes at most one chunk


@dataclass
class SeedAnswersRequest:
    """What a `seed-answers` job samples (stored as YAML of these fields in the job's config_yaml). Settings left
    None come from the configuration's generation section."""

    project: str
    samples: int = 4  # answers per seed prompt
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    config: str = ""  # the name of one of the project's saved configurations, or YAML; empty: its latest

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError(f"samples must be at least 2 (a best and a worst answer), not {self.samples}")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be above 0 (greedy answers are all the same), not {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")


def project_config(store: Store, project: Project, config: str = "") -> RunConfig:
    """The configuration a seed-answers job takes its model and settings from: `config` names one of the project's
    saved configurations (its latest of that name) or is YAML; empty, the project's latest saved configuration, or
    the defaults with the project's model when it has none saved."""
    from engine.config import ConfigError, parse_config

    saved = store.configs(project.id)
    named = [c for c in saved if c["name"] == config]
    if named or (not config and saved):
        chosen = (named or saved)[-1]
        return parse_config(chosen["yaml"], f"project {project.name!r} configuration {chosen['name']!r}")
    if config and ":" not in config:
        names = ", ".join(sorted({c["name"] for c in saved})) or "none"
        raise ConfigError(f"project {project.name!r} has no saved configuration named {config!r} (saved: {names})")
    cfg = parse_config(config, f"seed answers configuration of project {project.name!r}")
    if not cfg.model:
        cfg.model = project.model
    if not cfg.model:
        raise ConfigError(f"project {project.name!r} names no model: save a configuration with one")
    return cfg


def run_seed_answers(
    store: Store, job: Job, req: SeedAnswersRequest, stage: str, progress: Progress, say: Callable[[str], None]
) -> None:
    """The one stage (`sample`, STAGES): answers for every seed prompt of the project that has none yet. Progress
    counts answers, so a stop is noticed after every generate batch."""
    project = store.project(req.project)
    if project is None or project.id != job.project_id:
        raise ValueError(f"job {job.id} belongs to no project named {req.project!r}")
    prompts = store.seed_prompts(project.id)
    todo = [ex for ex in prompts if not any(a.source == "model" for a in store.seed_answers(ex.id))]
    total = len(prompts) * req.samples
    progress(total - len(todo) * req.samples, total, force=True)
    if not todo:
        say(f"every one of the {len(prompts)} seed prompts has answers already")
        return
    cfg = project_config(store, project, req.config)
    sampler = _Sampler.load(cfg, req)
    say(
        f"sampling {req.samples} answers for each of {len(todo)} seed prompts ({len(prompts) - len(todo)} done "
        f"before) from {cfg.model} on {sampler.device}: temperature {sampler.settings.temperature:g}, top_p "
        f"{sampler.settings.top_p:g}, up to {sampler.settings.max_new_tokens} new tokens"
    )
    written = 0
    for start in range(0, len(todo), PROMPTS_PER_CHUNK):
        # sample one chunk; a stop inside it leaves the chunk unwritten
        chunk = todo[start : start + PROMPTS_PER_CHUNK]
        done = total - (len(todo) - start) * req.samples
        answers = sampler.answers(
            chunk, seed=cfg.seed * 1_000_003 + chunk[0].id, progress=lambda n, _, base=done: progress(base + n, total)
        )
        # write each prompt's answers in a transaction of its own
        for ex, group in zip(chunk, answers):
            written += store.add_seed_answers(project.id, ex.id, group)
        progress(done + len(chunk) * req.samples, total)
    say(f"{written} answers written for {len(todo)} seed prompts")
    progress(total, total, force=True)


@dataclass
class _Sampler:
    """The project's model with the job's sampling settings."""

    model: torch.nn.Module
    tokenizer: object  # the model's PreTrainedTokenizerBase
    settings: SamplingSettings
    device: torch.device
    score_batch_size: int  # sequences per forward pass when an answer's log-prob needs scoring

    @classmethod
    def load(cls, cfg: RunConfig, req: SeedAnswersRequest) -> _Sampler:
        from engine.method import models
        from engine.method.generation import SamplingSettings
        from engine.worlds import resolve_path

        model_path = resolve_path(cfg.model)
        device = models.pick_device(cfg.device)
        model = models.load_base_model(model_path, device, models.pick_dtype(device, cfg.dtype), cfg.trust_remote_code)
        gen = cfg.generation
        settings = SamplingSettings(
            samples_per_prompt=req.samples,
            temperature=gen.temperature if req.temperature is None else req.temperature,
            top_p=gen.top_p if req.top_p is None else req.top_p,
            max_new_tokens=gen.max_new_tokens if req.max_new_tokens is None else req.max_new_tokens,
            batch_size=gen.batch_size,
        )
        return cls(
            model, models.load_tokenizer(model_path, cfg.trust_remote_code), settings, device, cfg.judge.batch_size
        )

    def answers(
        self, prompts: list[Example], seed: int, progress: Callable[[int, int], None]
    ) -> list[list[SeedAnswer]]:
        """Per prompt, its SeedAnswer list. The log-prob is the one sampling read where it is exactly the scorer's
        (engine.method.generation); the others are scored here, so every model answer has one."""
        from engine.method import scoring
        from engine.method.generation import generate
        from storage import SeedAnswer

        settings = replace(self.settings, seed=seed)
        samples = generate(self.model, self.tokenizer, [ex.prompt for ex in prompts], settings, progress)
        unscored = [(i, k) for i, group in enumerate(samples) for k, sample in enumerate(group) if sample.logp is None]
        if unscored:
            logps = scoring.sequence_logps(
                self.model,
                self.tokenizer,
                [prompts[i].prompt for i, _ in unscored],
                [samples[i][k].text for i, k in unscored],
                self.score_batch_size,
            )
            for (i, k), logp in zip(unscored, logps):
                samples[i][k].logp = logp
        return [
            [
                SeedAnswer(example_id=ex.id, sample_index=k, text=s.text, logp=s.logp, tokens=s.n_tokens)
                for k, s in enumerate(group)
            ]
            for ex, group in zip(prompts, samples)
        ]
