"""Exports the Hugging Face ecosystem loads as-is: a run's LoRA adapter (PEFT), a merged model (sharded
safetensors), or the grown preference dataset in TRL's format (JSONL, Parquet or a `datasets` folder), each
with a card. Everything is written into a hidden folder beside `out` and renamed into place at the end, so
a failed or killed export leaves no partial `out`; the next export clears what a killed one left behind."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Callable, Iterator

import psutil
import yaml

from engine.config import ConfigError, RunConfig, parse_config
from engine.data.report import round_rows
from storage import Artifact, Example, Job, Pair, Project, Store
from storage.records import LABEL_SOURCES, Messages

Progress = Callable[[str, int, int], None]

WHATS = ("model", "adapter", "dataset")
FORMATS = ("jsonl", "parquet", "hf")
DATA_FILES = {"jsonl": "train.jsonl", "parquet": "train.parquet"}
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"})  # loading these can run code
TRUSTED = ("seed", "human", "gold")  # labels that pass any confidence filter
TAGS = ["spa", "dpo", "trl"]
COLUMNS = {
    "prompt": "the prompt: a list of chat messages (conversational) or a string (standard)",
    "chosen": "the preferred answer ([{role: assistant, content}] when conversational); a person's "
              "rewritten answer when they wrote one",
    "rejected": "the answer the label rejects",
    "round": "the SPA round the pair comes from; 0 for the seed pairs",
    "source": "who labelled the pair: seed (imported seed set), self (the model's own judgement), "
              "human (a person in the studio), gold (the demo world's gold reward)",
    "confidence": "how sure the label is: σ(r_chosen − r_rejected) for self labels, 1.0 for seed, human "
                  "and gold labels",
    "chosen_score": "the judge's reward of the chosen answer, β·(logp_policy − logp_init); null where it "
                    "was never scored (seed pairs, a person's own answer)",
    "rejected_score": "the judge's reward of the rejected answer; null for seed pairs",
    "noisy": "flagged as a likely wrong label by de-coupled noise detection during training",
}


class ExportError(Exception):
    """A request the export refuses; nothing was written."""


@dataclass
class ExportRequest:
    project: str
    what: str  # model | adapter | dataset
    out: str
    round: int | None = None  # model/adapter: which round (default the last)
    format: str = "jsonl"  # dataset: jsonl | parquet | hf
    force: bool = False  # replace a non-empty `out`
    rounds: list[int] | None = None  # dataset filters
    sources: list[str] | None = None
    min_confidence: float | None = None
    exclude_noisy: bool = False
    job_id: int | None = None  # which run (default: the project's latest run with artifacts)
    max_shard_size: int | str = "5GB"  # merged model: safetensors shards past this size


@dataclass
class RunModel:
    """One exportable round of one run: what `exportable` lists and what a model export reads."""
    job_id: int
    round: int
    kind: str  # adapter | model
    path: str
    base_model: str

    def as_dict(self) -> dict:
        whats = ["model", "adapter"] if self.kind == "adapter" else ["model"]
        return {"job_id": self.job_id, "round": self.round, "kind": self.kind, "path": self.path,
                "base_model": self.base_model, "exists": Path(self.path).is_dir(), "exports": whats}


@dataclass
class PreferenceRow:
    prompt: Messages
    chosen: str
    rejected: str
    round: int
    source: str
    confidence: float | None
    chosen_score: float | None
    rejected_score: float | None
    noisy: bool

    def record(self, conversational: bool) -> dict:
        if conversational:
            prompt, chosen, rejected = self.prompt, _assistant(self.chosen), _assistant(self.rejected)
        else:
            prompt, chosen, rejected = self.prompt[0]["content"], self.chosen, self.rejected
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "round": self.round, "source": self.source,
                "confidence": self.confidence, "chosen_score": self.chosen_score,
                "rejected_score": self.rejected_score, "noisy": self.noisy}


@dataclass
class RunCard:
    """What a model card says about the run a model came from."""
    project: str
    job_id: int
    round: int
    base_model: str
    cfg: RunConfig | None
    label_counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)


def exportable(db: str | Path, project: str) -> list[dict]:
    """Every round of every run that a model (and, with LoRA, an adapter) can be exported from, newest run first."""
    store = _open(db)
    try:
        proj = _project(store, project)
        out = []
        for job in reversed(store.jobs(proj.id)):
            out += [m.as_dict() for m in _run_models(store, proj.id, job.id)]
        return out
    finally:
        store.close()


def export(db: str | Path, req: ExportRequest, progress: Progress | None = None) -> Path:
    """Write what `req` asks for under `req.out` and return the folder. Refuses (ExportError) before writing
    anything when the request, the project, the run or the destination is wrong."""
    report = progress or (lambda stage, done, total: None)
    _check_request(req)
    out = _destination(req.out)
    store = _open(db)
    try:
        proj = _project(store, req.project)
        if req.what == "dataset":
            rows, conversational = _dataset_rows(store, proj, req, report)
            _refuse_protected(out, [Path(db)])
            _check_empty(out, req.force)
            with _staging(out, req.force) as tmp:
                _write_dataset(tmp, rows, conversational, req, proj, report)
            return out
        chosen = _pick_model(store, proj.id, req)
        card = _run_card(store, proj, chosen)
        _refuse_protected(out, [Path(db), Path(chosen.path), Path(chosen.base_model)])
        _check_empty(out, req.force)
        with _staging(out, req.force) as tmp:
            if req.what == "adapter":
                _write_adapter(tmp, chosen, card, report)
            else:
                _write_merged(tmp, chosen, card, req.max_shard_size, report)
        return out
    finally:
        store.close()


# the request, the project and the run

def _check_request(req: ExportRequest) -> None:
    if req.what not in WHATS:
        raise ExportError(f"what must be one of {', '.join(WHATS)}, got {req.what!r}")
    if req.what == "dataset":
        if req.format not in FORMATS:
            raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {req.format!r}")
        if req.round is not None:
            raise ExportError("round picks a model's round; to choose a dataset's rounds use rounds=[...] "
                              "(--rounds on the command line)")
        unknown = sorted(set(req.sources or []) - set(LABEL_SOURCES))
        if unknown:
            raise ExportError(f"unknown source(s) {', '.join(unknown)}; use {', '.join(LABEL_SOURCES)}")
        if req.min_confidence is not None and not 0 <= req.min_confidence <= 1:
            raise ExportError(f"min_confidence must be between 0 and 1, got {req.min_confidence}")
    elif req.rounds or req.sources or req.min_confidence is not None or req.exclude_noisy:
        raise ExportError("rounds, sources, min_confidence and exclude_noisy filter a dataset export; "
                          f"they mean nothing for --what {req.what}")


def _open(db: str | Path) -> Store:
    """Opening a Store creates a missing database; an export must not leave an empty one behind a typo."""
    if not Path(db).is_file():
        raise ExportError(f"no database at {db}")
    return Store(db)


def _project(store: Store, name: str) -> Project:
    proj = store.project(name)
    if proj is None:
        known = ", ".join(p.name for p in store.projects()) or "none"
        raise ExportError(f"no project named {name!r} (projects: {known})")
    return proj


def _run_models(store: Store, project_id: int, job_id: int) -> list[RunModel]:
    """A LoRA run exports from its per-round adapters (its merged `final` folder is the last one merged);
    a full fine-tune from its per-round weights. A stage that ran twice registered twice: the latest wins."""
    arts = store.artifacts(project_id, job_id=job_id)
    kind = "adapter" if any(a.kind == "adapter" for a in arts) else "model"
    latest: dict[int, Artifact] = {}
    for a in arts:
        if a.kind == kind and a.round is not None:
            latest[a.round] = a
    return [RunModel(job_id, r, kind, a.path, _base_model(store, job_id, a)) for r, a in sorted(latest.items())]


def _base_model(store: Store, job_id: int, art: Artifact) -> str:
    if art.meta.get("base_model"):
        return str(art.meta["base_model"])
    adapter_config = Path(art.path) / "adapter_config.json"
    if adapter_config.is_file():
        found = json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if found:
            return str(found)
    cfg = _run_config(store.job(job_id))
    return cfg.model if cfg is not None else ""


def _run_config(job: Job) -> RunConfig | None:
    """The run's configuration, for the card; a config that no longer validates only costs the card its details."""
    try:
        return parse_config(job.config_yaml, f"job {job.id}") if job.config_yaml else None
    except ConfigError:
        return None


def _pick_model(store: Store, project_id: int, req: ExportRequest) -> RunModel:
    if req.job_id is not None:
        if req.job_id not in {j.id for j in store.jobs(project_id)}:
            raise ExportError(f"run {req.job_id} is not a run of project {req.project!r}")
        candidates = _run_models(store, project_id, req.job_id)
        if not candidates:
            raise ExportError(f"run {req.job_id} has no saved model yet")
    else:
        candidates = []
        for job in reversed(store.jobs(project_id)):
            candidates = _run_models(store, project_id, job.id)
            if candidates:
                break
        if not candidates:
            raise ExportError(f"project {req.project!r} has no run with a saved model yet")
    job_id = candidates[0].job_id
    if req.what == "adapter" and candidates[0].kind != "adapter":
        raise ExportError(f"run {job_id} is a full fine-tune: it has no LoRA adapter to export; "
                          "export --what model to get its weights")
    if req.round is None:
        chosen = candidates[-1]
    else:
        by_round = {m.round: m for m in candidates}
        if req.round not in by_round:
            raise ExportError(f"run {job_id} has no saved model for round {req.round} "
                              f"(rounds: {', '.join(str(r) for r in sorted(by_round))})")
        chosen = by_round[req.round]
    if not Path(chosen.path).is_dir():
        raise ExportError(f"the saved {chosen.kind} of run {job_id} round {chosen.round} is missing: {chosen.path}")
    if not chosen.base_model and chosen.kind == "adapter":
        raise ExportError(f"run {job_id} does not say which base model its adapter belongs to")
    return chosen


def _run_card(store: Store, proj: Project, chosen: RunModel) -> RunCard:
    cfg = _run_config(store.job(chosen.job_id))
    seeds = sum(1 for ex in store.examples(proj.id, "seed") if ex.chosen is not None and ex.rejected is not None)
    counts = {"seed": seeds}
    for p in store.pairs(chosen.job_id):
        if p.round <= chosen.round and p.label in ("a", "b") and p.label_source:
            counts[p.label_source] = counts.get(p.label_source, 0) + 1
    metrics = {row.round: row.values for row in round_rows(store, chosen.job_id) if row.round <= chosen.round}
    return RunCard(proj.name, chosen.job_id, chosen.round, chosen.base_model, cfg, counts, metrics)


# the destination

def _destination(out: str) -> Path:
    """`out` itself, with symlinks resolved; a `..` in it is refused rather than followed out of the folder."""
    if not str(out).strip():
        raise ExportError("out is empty: name the folder to export into")
    if ".." in Path(out).parts:
        raise ExportError(f"out must not contain '..' (got {out!r}): name the export folder directly")
    target = Path(out).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} exists and is not a folder")
    return target


def _refuse_protected(out: Path, sources: list[Path]) -> None:
    """Replacing `out` must never delete what the export reads, the database, the home folder or the cwd."""
    for keep in sources + [Path.home(), Path.cwd()]:
        keep = keep.expanduser().resolve()
        if out == keep or out in keep.parents:
            raise ExportError(f"refusing to export into {out}: replacing it would delete {keep}")


def _check_empty(out: Path, force: bool) -> None:
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"{out} is not empty; choose a new folder or pass force (--force) to replace it")


def _inside(root: Path, name: str) -> Path:
    """A file named from data (an artifact's file list) must land under the export folder, nowhere else."""
    target = (root / name).resolve()
    if target == root or root not in target.parents:
        raise ExportError(f"refusing to write {name!r}: it would land outside the export folder")
    return target


def _exporter_alive(pid: int) -> bool:
    """Whether the export that named a temp folder with its process id may still be writing it (a zombie is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _clean_stale(out: Path) -> None:
    """Remove temp folders that killed exports into `out` left; those of exports still running are kept."""
    for kind in ("tmp", "old"):
        for leftover in out.parent.glob(f".{glob_escape(out.name)}.{kind}-*"):
            match = re.match(rf"\.{re.escape(out.name)}\.{kind}-(\d+)-", leftover.name)
            if match and leftover.is_dir() and not leftover.is_symlink() and not _exporter_alive(int(match.group(1))):
                shutil.rmtree(leftover, ignore_errors=True)


def _audit(root: Path) -> None:
    """Last check before the rename: plain files only, all inside, and no pickles (safetensors only)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                raise ExportError(f"refusing to export a symbolic link: {path.relative_to(root)}")
            if path.suffix in PICKLE_SUFFIXES:
                raise ExportError(f"refusing to export a pickled file (safetensors only): {path.relative_to(root)}")


@contextmanager
def _staging(out: Path, force: bool) -> Iterator[Path]:
    """A hidden temp folder beside `out` (same filesystem, so the final rename is atomic), named with this
    process id so a later export can tell a killed export's leftovers from a running one's."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as e:
        raise ExportError(f"could not write into {out.parent}: {e}") from e
    try:
        yield tmp
        _audit(tmp)
        _move_into_place(tmp, out, force)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"could not write {out}: {e}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    _check_empty(out, force)
    old = out.with_name(f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# models

def _write_adapter(tmp: Path, chosen: RunModel, card: RunCard, report: Progress) -> None:
    """The adapter folder as the run saved it (PEFT format), without pickles and with the model card."""
    src = Path(chosen.path)
    files = sorted(p for p in src.iterdir() if p.is_file())
    names = {p.name for p in files}
    missing = {"adapter_config.json", "adapter_model.safetensors"} - names
    if missing:
        raise ExportError(f"{src} is not a PEFT adapter in safetensors: missing {', '.join(sorted(missing))}")
    for i, path in enumerate(files):
        report("copy", i, len(files))
        if path.suffix not in PICKLE_SUFFIXES and path.name != "README.md":
            shutil.copyfile(path, _inside(tmp, path.name))
    if "tokenizer_config.json" not in names:
        report("tokenizer", 0, 1)
        _load_tokenizer(chosen.base_model, card).save_pretrained(tmp)
    _inside(tmp, "README.md").write_text(model_card(card, adapter=True), encoding="utf-8")
    report("copy", len(files), len(files))


def _write_merged(tmp: Path, chosen: RunModel, card: RunCard, max_shard_size: int | str, report: Progress) -> None:
    """Full weights in safetensors, sharded past `max_shard_size`: the base with the round's adapter merged
    in, or a full fine-tune's weights; with the tokenizer (chat template) and a generation config."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    trust = bool(card.cfg and card.cfg.trust_remote_code)
    report("load", 0, 3)
    if chosen.kind == "adapter":
        base = AutoModelForCausalLM.from_pretrained(chosen.base_model, dtype="auto", use_safetensors=True,
                                                    trust_remote_code=trust)
        report("merge", 1, 3)
        model = PeftModel.from_pretrained(base, chosen.path).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(chosen.path, dtype="auto", use_safetensors=True,
                                                     trust_remote_code=trust)
    tokenizer = _load_tokenizer(chosen.path if _has_tokenizer(chosen.path) else chosen.base_model, card)
    generation = model.generation_config
    if generation.eos_token_id is None:
        generation.eos_token_id = tokenizer.eos_token_id
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    report("save", 2, 3)
    model.save_pretrained(tmp, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(tmp)
    _inside(tmp, "README.md").write_text(model_card(card, adapter=False), encoding="utf-8")
    report("save", 3, 3)


def _has_tokenizer(path: str) -> bool:
    return (Path(path) / "tokenizer_config.json").is_file()


def _load_tokenizer(path: str, card: RunCard):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=bool(card.cfg and card.cfg.trust_remote_code))


# datasets

def _dataset_rows(store: Store, proj: Project, req: ExportRequest,
                  report: Progress) -> tuple[list[PreferenceRow], bool]:
    """Seed pairs (round 0) and labelled pairs (a or b; tie and both_bad are no preference), filtered."""
    rounds = req.rounds or None
    sources = req.sources or None
    if req.job_id is not None and req.job_id not in {j.id for j in store.jobs(proj.id)}:
        raise ExportError(f"run {req.job_id} is not a run of project {req.project!r}")
    rows: list[PreferenceRow] = []
    seeds = store.examples(proj.id, "seed")
    if (rounds is None or 0 in rounds) and (sources is None or "seed" in sources):
        rows += [_seed_row(ex) for ex in seeds if ex.chosen is not None and ex.rejected is not None]
    pairs = store.project_pairs(proj.id, rounds, sources, req.min_confidence, req.exclude_noisy)
    for i, p in enumerate(pairs):
        if i % 1000 == 0:
            report("rows", i, len(pairs))
        if p.label in ("a", "b") and (req.job_id is None or p.job_id == req.job_id):
            rows.append(_pair_row(p))
    if not rows:
        raise ExportError(f"no preference pairs of project {req.project!r} match the filters")
    return rows, _is_conversational(store, proj, seeds, rows)


def _is_conversational(store: Store, proj: Project, seeds: list[Example], rows: list[PreferenceRow]) -> bool:
    """Conversational when the project's input was, or when any prompt is more than one user turn: a plain
    string would lose the turns."""
    if any(len(r.prompt) != 1 or r.prompt[0]["role"] != "user" for r in rows):
        return True
    return any(ex.conversational for ex in seeds) or any(
        ex.conversational for role in ("pool", "eval") for ex in store.examples(proj.id, role))


def _messages(prompt: Messages) -> Messages:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def _assistant(text: str) -> Messages:
    return [{"role": "assistant", "content": text}]


def _seed_row(ex: Example) -> PreferenceRow:
    return PreferenceRow(_messages(ex.prompt), ex.chosen, ex.rejected, 0, "seed", 1.0, None, None, False)


def _pair_row(p: Pair) -> PreferenceRow:
    """Chosen is the labelled answer, or a person's own answer when they wrote one; rejected is the answer the
    label rejects either way."""
    a_wins = p.label == "a"
    rejected, rejected_score = (p.response_b, p.reward_b) if a_wins else (p.response_a, p.reward_a)
    if p.human_response:
        chosen, chosen_score = p.human_response, None
    else:
        chosen, chosen_score = (p.response_a, p.reward_a) if a_wins else (p.response_b, p.reward_b)
    confidence = 1.0 if p.label_source in TRUSTED else p.confidence
    return PreferenceRow(_messages(p.prompt), chosen, rejected, p.round, p.label_source or "self", confidence,
                         chosen_score, rejected_score, bool(p.noisy))


def _features(conversational: bool):
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    text = List(message) if conversational else Value("string")
    return Features({"prompt": text, "chosen": text, "rejected": text, "round": Value("int64"),
                     "source": Value("string"), "confidence": Value("float64"), "chosen_score": Value("float64"),
                     "rejected_score": Value("float64"), "noisy": Value("bool")})


def _write_dataset(tmp: Path, rows: list[PreferenceRow], conversational: bool, req: ExportRequest, proj: Project,
                   report: Progress) -> None:
    records = [r.record(conversational) for r in rows]
    if req.format == "jsonl":
        with _inside(tmp, DATA_FILES["jsonl"]).open("w", encoding="utf-8") as f:
            for i, rec in enumerate(records):
                if i % 1000 == 0:
                    report("write", i, len(records))
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    else:
        from datasets import Dataset

        report("write", 0, len(records))
        ds = Dataset.from_list(records, features=_features(conversational))
        if req.format == "parquet":
            ds.to_parquet(str(_inside(tmp, DATA_FILES["parquet"])))
        else:
            ds.save_to_disk(str(tmp))
    _inside(tmp, "README.md").write_text(dataset_card(proj.name, rows, conversational, req), encoding="utf-8")
    report("write", len(records), len(records))


# cards

def _front_matter(values: dict) -> str:
    return "---\n" + yaml.safe_dump(values, sort_keys=False, allow_unicode=True) + "---\n"


def _cell(value) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _method_rows(cfg: RunConfig) -> list[list]:
    rounds = range(1, cfg.rounds + 1)
    lora = (f"r {cfg.lora.r}, alpha {cfg.lora.alpha}, dropout {cfg.lora.dropout}, targets {cfg.lora.target_modules}"
            if cfg.lora.enabled else "off (full fine-tune)")
    refine = (f"on: flag the lowest {cfg.refine.k_fraction:g} of a {cfg.refine.window}-pair rolling window, "
              f"soft label 1 − {cfg.refine.alpha:g}·flag after the first {cfg.refine.warmup_fraction:g} of each "
              "round's steps" if cfg.refine.enabled else "off")
    return [
        ["method", "SPA: seed DPO, then per round generate 2 answers, self-judge with the implicit reward "
                   "β·(logp_policy − logp_init), and train noise-aware DPO"],
        ["beta", cfg.beta],
        ["learning rate", cfg.lr],
        ["rounds", cfg.rounds],
        ["prompts per round", ", ".join(str(cfg.prompts_for_round(i)) for i in rounds) or "-"],
        ["epochs (seed / per round)", f"{cfg.epochs} / {cfg.round_epochs}"],
        ["effective batch size", cfg.batch_size],
        ["lr schedule", f"{cfg.lr_scheduler}, warm-up ratio {cfg.warmup_ratio:g}"],
        ["LoRA", lora],
        ["judge", cfg.judge.kind],
        ["generation", f"{cfg.generation.samples_per_prompt} samples, temperature {cfg.generation.temperature:g}, "
                       f"top_p {cfg.generation.top_p:g}, up to {cfg.generation.max_new_tokens} new tokens"],
        ["self-refinement", refine],
        ["λ schedule (extrapolation)", ", ".join(f"round {i}: {cfg.lam_for_round(i):g}" for i in rounds) or "-"],
    ]


def model_card(card: RunCard, adapter: bool) -> str:
    """README.md for an exported adapter or merged model: base model, method and parameters, labels, metrics."""
    front = _front_matter({"base_model": card.base_model, "library_name": "peft" if adapter else "transformers",
                           "tags": TAGS, "pipeline_tag": "text-generation"})
    what = (f"A LoRA adapter for `{card.base_model}`" if adapter
            else f"`{card.base_model}` with the round's LoRA adapter merged in")
    if not adapter and card.cfg is not None and not card.cfg.lora.enabled:
        what = f"A full fine-tune of `{card.base_model}`"
    parts = [front, f"# {card.project}: SPA round {card.round}\n",
             f"{what}, aligned with Spread Preference Annotation (SPA) in SPA Studio: run {card.job_id}, "
             f"round {card.round} (round 0 is DPO on the seed pairs).\n", "## Method\n"]
    parts.append(_table(["parameter", "value"], _method_rows(card.cfg)) if card.cfg is not None
                 else "The run's configuration is not available.")
    labels = [[source, card.label_counts.get(source, 0)] for source in LABEL_SOURCES]
    parts += ["\n## Labels used\n",
              f"Preference pairs the model was trained on, by who labelled them (rounds 0–{card.round}):\n",
              _table(["source", "pairs"], labels)]
    parts.append("\n## Metrics per round\n")
    names = sorted({name for values in card.metrics.values() for name in values})
    if names:
        rounds = sorted(card.metrics)
        parts.append(_table(["metric"] + [f"round {r}" for r in rounds],
                            [[n] + [card.metrics[r].get(n, "") for r in rounds] for n in names]))
    else:
        parts.append("No evaluation metrics were recorded.")
    if adapter:
        usage = ("from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                 f"base = AutoModelForCausalLM.from_pretrained({card.base_model!r})\n"
                 "model = PeftModel.from_pretrained(base, \"path/to/this/folder\")\n"
                 "tokenizer = AutoTokenizer.from_pretrained(\"path/to/this/folder\")")
    else:
        usage = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                 "model = AutoModelForCausalLM.from_pretrained(\"path/to/this/folder\")\n"
                 "tokenizer = AutoTokenizer.from_pretrained(\"path/to/this/folder\")")
    parts += ["\n## Use\n", f"```python\n{usage}\n```\n"]
    return "\n".join(parts)


def dataset_card(project: str, rows: list[PreferenceRow], conversational: bool, req: ExportRequest) -> str:
    """README.md for an exported dataset: counts per source and round, the filters, what each column means."""
    meta: dict = {"tags": TAGS, "task_categories": ["text-generation"], "size_categories": [_size(len(rows))]}
    if req.format in DATA_FILES:
        meta["configs"] = [{"config_name": "default",
                            "data_files": [{"split": "train", "path": DATA_FILES[req.format]}]}]
    counts: dict[tuple[str, int], int] = {}
    for r in rows:
        counts[(r.source, r.round)] = counts.get((r.source, r.round), 0) + 1
    rounds = sorted({r for _, r in counts})
    sources = [s for s in LABEL_SOURCES if any(src == s for src, _ in counts)]
    table = _table(["source"] + [f"round {r}" for r in rounds] + ["total"],
                   [[s] + [counts.get((s, r), 0) for r in rounds] + [sum(counts.get((s, r), 0) for r in rounds)]
                    for s in sources])
    filters = [f"rounds: {', '.join(str(r) for r in req.rounds)}" if req.rounds else "",
               f"sources: {', '.join(req.sources)}" if req.sources else "",
               f"min_confidence: {req.min_confidence:g} (seed, human and gold labels always pass)"
               if req.min_confidence is not None else "",
               "noisy pairs excluded" if req.exclude_noisy else "",
               f"run: {req.job_id}" if req.job_id is not None else ""]
    filters = [f"- {f}" for f in filters if f] or ["- none: every seed pair and every labelled pair of every run"]
    style = ("conversational (prompt is a list of messages; chosen and rejected are one assistant message each)"
             if conversational else "standard (prompt, chosen and rejected are strings)")
    loading = {"jsonl": 'load_dataset("json", data_files="train.jsonl", split="train")',
               "parquet": 'load_dataset("parquet", data_files="train.parquet", split="train")',
               "hf": 'load_from_disk("path/to/this/folder")'}[req.format]
    parts = [_front_matter(meta), f"# {project}: preference dataset\n",
             f"{len(rows)} preference pairs grown with Spread Preference Annotation (SPA) in SPA Studio, in TRL's "
             f"preference format, {style}. Pairs labelled tie or both_bad are left out: they state no preference.\n",
             "## Rows per source and round\n", table, "\n## Filters applied\n", "\n".join(filters),
             "\n## Columns\n", _table(["column", "meaning"], [[k, v] for k, v in COLUMNS.items()]),
             "\n## Use\n", f"```python\nfrom datasets import load_dataset, load_from_disk\n\nds = {loading}\n```\n",
             "TRL's `DPOTrainer` takes it as is; it drops the provenance columns itself.\n"]
    return "\n".join(parts)


def _size(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"
