"""The README.md cards of exported models and datasets: hub metadata, the method's parameters, labels, metrics."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

from engine.config import RunConfig
from engine.data.export.records import DATA_FILES, ExportRequest, PreferenceRow, RunCard
from engine.method.agreement import interval_text
from engine.runtime.auto_judge import AutoChoice
from storage.records import LABEL_SOURCES

TAGS = ["spa", "dpo", "trl"]


COLUMNS = {
    "prompt": "the prompt: a list of chat messages (conversational) or a string (standard)",
    "chosen": "the preferred answer ([{role: assistant, content}] when conversational); a person's "
    "rewritten answer when they wrote one",
    "rejected": "the answer the label rejects",
    "round": "the SPA round the pair comes from; 0 for the seed pairs",
    "source": "who labelled the pair: seed (imported seed set), self (the model's own judgement), "
    "human (a person in the studio; in round 0, a seed prompt whose sampled answers they ranked), "
    "gold (the demo world's gold reward)",
    "confidence": "how sure the label is: σ(r_chosen − r_rejected) for self labels, 1.0 for seed, human "
    "and gold labels",
    "chosen_score": "the judge's reward of the chosen answer, β·(logp_policy − logp_init); null where it "
    "was never scored (seed pairs, a person's own answer)",
    "rejected_score": "the judge's reward of the rejected answer; null for seed pairs",
    "noisy": "flagged as a likely wrong label by de-coupled noise detection after the α = 0 warm-up, so its "
    "label was smoothed in training (flags raised during the warm-up changed nothing and are not set)",
    "labelled_by": "the person (the studio's signed-in user; studio or api without sign-in) whose label is in "
    "force: who labelled or accepted the pair, or ranked the seed prompt; where two or more people labelled it, "
    "the newest of the majority; null for seed and self labels",
    "labels_by_person": "every person's latest label of the pair ([{person, label}], label a, b, tie or both_bad); "
    "where two or more people labelled it, the pair's label is their majority (a tie between them leaves the pair "
    "out); empty where no person labelled it",
}


def public_name(model: str) -> str:
    """How a card names a model: a hub id as it is, a local folder by its name only (an absolute path of the
    exporting machine means nothing on the hub, and tells where its files lay)."""
    path = Path(model).expanduser()
    if path.is_absolute() or path.exists():
        return path.resolve().name
    return model


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
    lora = (
        f"r {cfg.lora.r}, alpha {cfg.lora.alpha}, dropout {cfg.lora.dropout}, targets {cfg.lora.target_modules}"
        if cfg.lora.enabled
        else "off (full fine-tune)"
    )
    refine = (
        f"on: flag the lowest {cfg.refine.k_fraction:g} of a {cfg.refine.window}-pair rolling window, "
        f"soft label 1 − {cfg.refine.alpha:g}·flag after the first {cfg.refine.warmup_fraction:g} of each "
        "round's steps"
        if cfg.refine.enabled
        else "off"
    )
    return [
        [
            "method",
            "SPA: seed DPO, then per round generate 2 answers, self-judge with the implicit reward "
            "β·(logp_policy − logp_init), and train noise-aware DPO",
        ],
        ["beta", cfg.beta],
        ["learning rate", cfg.learning_rate],
        ["rounds", cfg.rounds],
        ["prompts per round", ", ".join(str(cfg.prompts_for_round(i)) for i in rounds) or "-"],
        ["epochs (seed / per round)", f"{cfg.epochs} / {cfg.round_epochs}"],
        ["effective batch size", cfg.batch_size],
        ["lr schedule", f"{cfg.lr_scheduler}, warm-up ratio {cfg.warmup_ratio:g}"],
        ["LoRA", lora],
        ["judge", cfg.judge.kind],
        [
            "generation",
            f"{cfg.generation.samples_per_prompt} samples, temperature {cfg.generation.temperature:g}, "
            f"top_p {cfg.generation.top_p:g}, up to {cfg.generation.max_new_tokens} new tokens",
        ],
        ["self-refinement", refine],
        ["λ schedule (extrapolation)", ", ".join(f"round {i}: {cfg.lam_for_round(i):g}" for i in rounds) or "-"],
    ]


def model_card(card: RunCard, adapter: bool) -> str:
    """README.md for an exported adapter or merged model: base model, method and parameters, labels, metrics."""
    base = public_name(card.base_model)
    data = ModelCardData(
        base_model=base, library_name="peft" if adapter else "transformers", tags=TAGS, pipeline_tag="text-generation"
    )
    what = f"A LoRA adapter for `{base}`" if adapter else f"`{base}` with the round's LoRA adapter merged in"
    if not adapter and card.cfg is not None and not card.cfg.lora.enabled:
        what = f"A full fine-tune of `{base}`"
    parts = [
        f"# {card.project}: SPA round {card.round}\n",
        f"{what}, aligned with Spread Preference Annotation (SPA) in SPA Studio: run {card.job_id}, "
        f"round {card.round} (round 0 is DPO on the seed pairs).\n",
        "## Method\n",
    ]
    parts.append(
        _table(["parameter", "value"], _method_rows(card.cfg))
        if card.cfg is not None
        else "The run's configuration is not available."
    )
    labels = [[source, card.label_counts.get(source, 0)] for source in LABEL_SOURCES]
    parts += [
        "\n## Labels used\n",
        f"Preference pairs the model was trained on, by who labelled them (rounds 0–{card.round}):\n",
        _table(["source", "pairs"], labels),
    ]
    parts.append("\n## Metrics per round\n")
    names = sorted({name for values in card.metrics.values() for name in values})
    if names:
        rounds = sorted(card.metrics)
        parts.append(
            _table(
                ["metric"] + [f"round {r}" for r in rounds],
                [[n] + [card.metrics[r].get(n, "") for r in rounds] for n in names],
            )
        )
    else:
        parts.append("No evaluation metrics were recorded.")
    if adapter:
        usage = (
            "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f"base = AutoModelForCausalLM.from_pretrained({base!r})  # the base model's hub id or folder\n"
            'model = PeftModel.from_pretrained(base, "path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")'
        )
    else:
        usage = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")\n'
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")'
        )
    parts += ["\n## Use\n", f"```python\n{usage}\n```\n"]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(parts)))


def dataset_card(
    project: str,
    rows: list[PreferenceRow],
    conversational: bool,
    req: ExportRequest,
    judges: dict[tuple[int, int], AutoChoice] | None = None,
) -> str:
    """README.md for an exported dataset: counts per source and round, the filters, the judge `judge.kind: auto`
    chose per run and round (judges), what each column means."""
    configs = (
        [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_FILES[req.format]}]}]
        if req.format in DATA_FILES
        else None
    )
    data = DatasetCardData(
        tags=TAGS, task_categories=["text-generation"], size_categories=[_size(len(rows))], configs=configs
    )
    counts: dict[tuple[str, int], int] = {}
    for r in rows:
        counts[(r.source, r.round)] = counts.get((r.source, r.round), 0) + 1
    rounds = sorted({r for _, r in counts})
    sources = [s for s in LABEL_SOURCES if any(src == s for src, _ in counts)]
    table = _table(
        ["source"] + [f"round {r}" for r in rounds] + ["total"],
        [
            [s] + [counts.get((s, r), 0) for r in rounds] + [sum(counts.get((s, r), 0) for r in rounds)]
            for s in sources
        ],
    )
    filters = [
        f"rounds: {', '.join(str(r) for r in req.rounds)}" if req.rounds else "",
        f"sources: {', '.join(req.sources)}" if req.sources else "",
        f"min_confidence: {req.min_confidence:g} (seed, human and gold labels always pass)"
        if req.min_confidence is not None
        else "",
        "noisy pairs excluded" if req.exclude_noisy else "",
        f"run: {req.job_id}" if req.job_id is not None else "",
        "ranked seed prompts: every ordered pair (best over each middle answer over worst)"
        if req.seed_ordered_pairs
        else "",
    ]
    filters = [f"- {f}" for f in filters if f] or ["- none: every seed pair and every labelled pair of every run"]
    style = (
        "conversational (prompt is a list of messages; chosen and rejected are one assistant message each)"
        if conversational
        else "standard (prompt, chosen and rejected are strings)"
    )
    loading = {
        "jsonl": 'load_dataset("json", data_files="train.jsonl", split="train")',
        "parquet": 'load_dataset("parquet", data_files="train.parquet", split="train")',
        "hf": 'load_from_disk("path/to/this/folder")',
    }[req.format]
    parts = [
        f"# {project}: preference dataset\n",
        f"{len(rows)} preference pairs grown with Spread Preference Annotation (SPA) in SPA Studio, in TRL's "
        f"preference format, {style}. Pairs labelled tie or both_bad are left out: they state no preference; so are "
        "pairs the people who labelled them tie on.\n",
        "## Rows per source and round\n",
        table,
        "\n## Filters applied\n",
        "\n".join(filters),
        *_auto_judge_section(judges or {}),
        "\n## Columns\n",
        _table(["column", "meaning"], [[k, v] for k, v in COLUMNS.items()]),
        "\n## Use\n",
        f"```python\nfrom datasets import load_dataset, load_from_disk\n\nds = {loading}\n```\n",
        "TRL's `DPOTrainer` takes it as is; it drops the provenance columns itself.\n",
    ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(parts)))


def _auto_judge_section(judges: dict[tuple[int, int], AutoChoice]) -> list[str]:
    """Which judge variant labelled each round of a `judge.kind: auto` run, and the figures it was chosen on."""
    if not judges:
        return []
    rows = []
    for (job_id, round_index), c in sorted(judges.items()):
        on = "judge-check (cross-fitted on the labelled pairs)" if c.basis == "judge_check" else "blind audit"
        alpha = "" if c.length_alpha is None else c.length_alpha
        rows.append([job_id, round_index, c.variant, on, interval_text(c.figures[c.variant]), c.n, alpha])
    lines = [
        "\n## Judge (judge.kind: auto)\n",
        "These rounds' self labels (and their confidence, chosen_score and rejected_score) come from the judge "
        "variant with the best lower bound of its 95% agreement interval with the person's labels; every variant "
        "is computed from the same log-probs.\n",
        _table(["run", "round", "judge", "chosen on", "agreement [95%]", "labels", "length α"], rows),
        "\nEvery variant's figures:\n",
    ]
    lines += [f"- run {job}, round {r}: {c.describe()}" for (job, r), c in sorted(judges.items())]
    return lines


def _size(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"
