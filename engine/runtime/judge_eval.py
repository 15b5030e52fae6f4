"""`python launch.py judge-eval` (and benchmarks/judge_eval.py): every judge scored on the same held-out
labelled pairs, so the paper's baselines (density ratio, reward model, LLM-as-judge) are compared with each
other on equal terms. No weights can be downloaded here, so the judges are built from the embedded demo world
(see NOTES). Each pair is shown with chosen and rejected in a seeded random order, so a judge that always says
"A" scores ~50%, not 100%; a tie counts as half right."""

from __future__ import annotations

import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import torch

from engine.data.importers import ImportFailed, load_examples
from engine.method.baseline_judges import DensityRatioJudge, LLMJudge, RewardModelJudge
from engine.method.judges import GoldJudge, ImplicitRewardJudge, Judge
from engine.runtime.judge_setup import judge_from_config
from engine.worlds import DEMO
from engine.worlds.demo_world import DemoWorld, build_demo_world
from storage.records import Example, Messages

REPO = Path(__file__).resolve().parents[2]
HH_SAMPLE = REPO.parent / "shared" / "data" / "hh-rlhf-harmless-test.jsonl.gz"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "judge_eval.md"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
JUDGES = ("gold", "implicit", "implicit_no_ref", "density_ratio", "llm_judge", "reward_model")
RM_PAIRS = 2000  # the stand-in external reward model's training pairs (teacher answers, gold-labelled)
RM_STEPS = 200
RM_BATCH = 16
RM_LR = 1e-3  # chosen on the demo world's validation pairs, never on the eval pairs
# The demo models are tiny: a second intra-op thread buys little on a CPU and, on a shared machine, its
# spin-waiting made reward-model training 7x slower here (the demo world builds with one thread too).
CPU_THREADS = 1
NOTES = """\
- gold: the demo world's gold reward; a sanity check (100% on demo pairs) that does not apply elsewhere.
- implicit: SPA's own judge as round 1 uses it, r = β·[logp(π_0) − logp(π_init)], where π_0 is the seed
  DPO of configs/demo.yaml (LoRA, the 64 gold-labelled seed pairs, 3 epochs) trained here, on the spot.
  With so few pairs π_0 moves with the LoRA's random initialisation (58-65% on demo eval over the three
  initialisations tried), so it is seeded with the config's seed.
- density_ratio: strong = the demo SFT model, weak = a randomly initialised model of the same shape
  (seeded). The demo build keeps no early SFT checkpoint, and a random model is the "knows nothing" end
  of the ratio, so r is the SFT log-likelihood plus a nearly length-proportional constant: in practice a
  length judge (see the length-bias table), right or wrong as often as the longer answer is the better.
- llm_judge: the demo SFT model asked "A or B?" in both orders. It is not instruction-tuned, so an
  accuracy near 50% is the expected, honest result.
- reward_model: the stand-in for an external reward model (the paper's PairRM is trained on large external
  preference data): the SFT model's weights under a fresh one-logit head, trained with the Bradley-Terry
  loss on 2,000 gold-labelled pairs of two answers by the demo's noisy teacher (the one the SFT model
  imitates) to fresh prompts, none of them an eval, validation or seed prompt. Trained on the 64 seed pairs alone it
  scores at chance on the validation pairs (48-53%), so more labels, not the same ones, are the fair foil.
- On the HH sample every judge is still a demo model (character tokenizer, trained on arithmetic), so
  ~50% there is expected: the row shows the pipeline runs on real data, not a quality claim.
"""


@dataclass
class DataSet:
    name: str
    path: Path
    examples: list[Example]
    chosen_first: list[bool]  # shown as response A?


@dataclass
class Outcome:
    judge: str
    data: str
    n: int
    seconds: float = 0.0
    accuracy: float | None = None  # None: the judge does not apply to this data
    picks_chosen: list[bool] = field(default_factory=list)
    note: str = ""

    @property
    def pairs_per_s(self) -> float | None:
        return self.n / self.seconds if self.accuracy is not None and self.seconds > 0 else None


def main(args) -> int:
    names = list(getattr(args, "judges", None) or JUDGES)
    unknown = [n for n in names if n not in JUDGES]
    if unknown:
        print(f"judge-eval: unknown judges {unknown}; choose from {', '.join(JUDGES)}", file=sys.stderr)
        return 2
    limit = getattr(args, "limit", None)
    seed = getattr(args, "seed", 0) or 0
    try:
        datasets = load_datasets(getattr(args, "data", None), limit, seed, getattr(args, "demo_dir", None))
    except (ImportFailed, FileNotFoundError) as e:
        print(f"judge-eval: {e}", file=sys.stderr)
        return 2
    if not datasets:
        print("judge-eval: no labelled pairs to score", file=sys.stderr)
        return 2
    world = demo_world(getattr(args, "demo_dir", None))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    outcomes: list[Outcome] = []
    started_all = time.perf_counter()
    seed_policy = None
    with _cpu_threads(CPU_THREADS if device.type == "cpu" else None) as threads:
        for name in names:
            started = time.perf_counter()
            judge = build_judge(name, world, device, seed, seed_policy)
            if isinstance(judge, ImplicitRewardJudge):
                seed_policy = judge.policy  # both implicit judges score with the same π_0: trained once
            print(f"judge {name}: ready in {time.perf_counter() - started:.1f} s", flush=True)
            for data in datasets:
                outcome = evaluate(judge, data)
                print(
                    f"  {data.name}: {format_accuracy(outcome)} on {outcome.n} pairs"
                    f"{f' ({outcome.pairs_per_s:.1f} pairs/s)' if outcome.pairs_per_s else ''}",
                    flush=True,
                )
                outcomes.append(outcome)
            del judge
    report = render_report(datasets, names, outcomes)
    print(report)
    out = Path(getattr(args, "out", None) or DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report_file(report, args, world, threads, time.perf_counter() - started_all))
    print(f"results written to {out}")
    return 0


@contextmanager
def _cpu_threads(n: int | None) -> Iterator[int]:
    """torch's intra-op threads set to n for the block (None: left alone), the caller's count back after."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# --- data ----------------------------------------------------------------------------------------


def demo_world(demo_dir: str | Path | None) -> DemoWorld:
    """The demo world the judges come from: a folder that already holds one is used as it is (whatever
    its size, so tests can pass a mini world), otherwise it is built or reused from the cache."""
    if demo_dir is not None and (Path(demo_dir) / "world.json").is_file():
        return DemoWorld.at(Path(demo_dir))
    return build_demo_world(Path(demo_dir) if demo_dir else None)


def load_datasets(files: list[str] | None, limit: int | None, seed: int, demo_dir: str | Path | None) -> list[DataSet]:
    """The given files, or by default the demo world's eval pairs and the HH sample (when present);
    the first `limit` pairs of each."""
    if files:
        sources = [(Path(f).name, Path(f)) for f in files]
    else:
        sources = [("demo eval", demo_world(demo_dir).eval_file)]
        if HH_SAMPLE.is_file():
            sources.append(("HH harmless", HH_SAMPLE))
    fits = fits_the_judges(demo_world(demo_dir))
    out = []
    for name, path in sources:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        loaded = load_examples(path, "eval").examples
        examples = [ex for ex in loaded if fits(ex)][:limit]
        if len(examples) < len(loaded[:limit]):
            print(
                f"{name}: {sum(not fits(ex) for ex in loaded)} pairs longer than the judges' context left out",
                flush=True,
            )
        rng = random.Random(f"{seed}:{name}")
        out.append(DataSet(name, path, examples, [rng.random() < 0.5 for _ in examples]))
    return out


def fits_the_judges(world: DemoWorld):
    """Whether a pair's prompt with its longer answer fits the demo model's context: the judges are built from it,
    and scoring refuses what does not fit rather than extrapolate past the trained positions."""
    from transformers import AutoConfig, AutoTokenizer

    from engine.method.encoding import prompt_ids, response_ids

    tokenizer = AutoTokenizer.from_pretrained(world.model_dir)
    window = AutoConfig.from_pretrained(world.model_dir).max_position_embeddings

    def fits(ex: Example) -> bool:
        answer = max(len(response_ids(tokenizer, ex.chosen)), len(response_ids(tokenizer, ex.rejected)))
        return len(prompt_ids(tokenizer, ex.prompt)) + answer <= window

    return fits


# --- judges --------------------------------------------------------------------------------------


def build_judge(name: str, world, device: torch.device, seed: int, seed_policy=None) -> Judge:
    """seed_policy: π_0 from an implicit judge built before, reused instead of trained again."""
    from engine.method.models import load_base_model, load_tokenizer

    if name == "gold":
        return GoldJudge(DEMO.gold_reward())
    if name in ("implicit", "implicit_no_ref"):
        return seed_round_judge(world, reference="init" if name == "implicit" else "none", policy=seed_policy)
    tokenizer = load_tokenizer(str(world.model_dir))
    if name == "density_ratio":
        strong = load_base_model(str(world.model_dir), device, torch.float32)
        return DensityRatioJudge(strong, random_twin(world.model_dir, seed).to(device), tokenizer, seed=seed)
    if name == "llm_judge":
        return LLMJudge(load_base_model(str(world.model_dir), device, torch.float32), tokenizer)
    if name == "reward_model":
        return RewardModelJudge(train_demo_reward_model(world, tokenizer, seed).to(device), tokenizer)
    raise ValueError(f"unknown judge {name!r}")


def random_twin(model_dir: Path, seed: int) -> torch.nn.Module:
    """A randomly initialised model with the same configuration (the density ratio's weak model)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config).eval()


def seed_round_judge(world, reference: str = "init", policy=None) -> ImplicitRewardJudge:
    """SPA's judge for round 1: π_0 = plain sigmoid DPO of π_init on the seed pairs with configs/demo.yaml's
    settings (what a demo run's seed stage trains), judged against π_init (its adapters switched off), or with
    no reference (reference="none", the authors' ablation)."""
    from engine.config import load_config
    from engine.method.preference_data import TrainRow
    from engine.method.trainer import TrainSettings, train_dpo
    from engine.runtime.checkpoints import load_policy

    cfg = load_config(DEMO_CONFIG, [f"judge.reference={reference}", "judge.kind=implicit"])
    if policy is None:
        rows = [
            TrainRow(pair_id=None, prompt=e.prompt, chosen=e.chosen, rejected=e.rejected, trusted=True)
            for e in load_examples(world.seed_file, "seed").examples
        ]
        settings = TrainSettings.for_round(cfg, 0)  # the seed round
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the fresh LoRA's random A matrices: the same π_0 on every run
            policy = load_policy(cfg, str(world.model_dir), world.root, None, trainable=True)
            train_dpo(policy.model, policy.tokenizer, rows, settings, None, reference="adapters_disabled")
        policy.model.eval()
    judge = judge_from_config(cfg, str(world.model_dir), lambda: policy)
    return replace(judge, name="implicit" if reference == "init" else "implicit_no_ref")


def teacher_pairs(world, n: int, seed: int) -> list[Example]:
    """n gold-labelled preference pairs on fresh demo prompts (none held out by the world): two answers of
    the noisy teacher the SFT model imitates, chosen = the higher gold reward; equal gold is redrawn."""
    from engine.worlds.demo_task import gold_reward, random_problem, teacher_answer

    held = {
        _last_user(e.prompt)
        for path, role in ((world.eval_file, "eval"), (world.validation_file, "eval"), (world.seed_file, "seed"))
        for e in load_examples(path, role).examples
    }
    p_correct = world.manifest["size"]["p_correct_end"]  # the teacher as the SFT model last saw it
    rng = random.Random(f"teacher-pairs:{seed}")
    pairs: list[Example] = []
    while len(pairs) < n:
        p = random_problem(rng)
        if p.prompt in held:
            continue
        a, b = teacher_answer(p, rng, p_correct), teacher_answer(p, rng, p_correct)
        ga, gb = gold_reward(p.prompt, a), gold_reward(p.prompt, b)
        if ga != gb:
            chosen, rejected = (a, b) if ga > gb else (b, a)
            pairs.append(
                Example(role="seed", prompt=[{"role": "user", "content": p.prompt}], chosen=chosen, rejected=rejected)
            )
    return pairs


def train_demo_reward_model(
    world, tokenizer, seed: int, steps: int = RM_STEPS, pairs: list[Example] | None = None
) -> torch.nn.Module:
    """A one-logit reward model on the SFT backbone, trained with −log σ(r_chosen − r_rejected) on `pairs`
    (default: RM_PAIRS teacher pairs; some seconds on a CPU for the demo model). Deterministic for a seed."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    pairs = teacher_pairs(world, RM_PAIRS, seed) if pairs is None else pairs
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialised score head" is the point here, not a warning
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(
                world.model_dir, num_labels=1, use_safetensors=True, pad_token_id=tokenizer.pad_token_id
            )
    finally:
        hf_logging.set_verbosity(verbosity)
    judge = RewardModelJudge(model, tokenizer)
    encoded = [(judge.encode(e.prompt, e.chosen), judge.encode(e.prompt, e.rejected)) for e in pairs]
    optimiser = torch.optim.AdamW(model.parameters(), lr=RM_LR, weight_decay=0.0)
    rng = random.Random(seed)
    order: list[int] = []
    model.train()
    for _ in range(steps):
        if len(order) < RM_BATCH:
            order += rng.sample(range(len(encoded)), len(encoded))
        batch, order = order[:RM_BATCH], order[RM_BATCH:]
        rewards = _forward_rewards(model, [encoded[i][0] for i in batch] + [encoded[i][1] for i in batch])
        loss = -torch.nn.functional.logsigmoid(rewards[: len(batch)] - rewards[len(batch) :]).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


def _forward_rewards(model, sequences: list[list[int]]) -> torch.Tensor:
    pad = model.config.pad_token_id
    width = max(len(s) for s in sequences)
    input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    return model(input_ids=input_ids, attention_mask=mask).logits[:, 0]


# --- scoring -------------------------------------------------------------------------------------


def applies(judge: Judge, data: DataSet) -> str:
    """Why a judge cannot score this data ('' when it can): the gold reward exists for demo prompts only."""
    if not isinstance(judge, GoldJudge):
        return ""
    from engine.worlds.demo_task import parse_prompt

    try:
        for e in data.examples:
            parse_prompt(_last_user(e.prompt))
    except ValueError:
        return "n/a: gold exists for demo-world prompts only"
    return ""


def _last_user(prompt: Messages) -> str:
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else ""


def evaluate(judge: Judge, data: DataSet) -> Outcome:
    outcome = Outcome(judge.name, data.name, len(data.examples))
    why = applies(judge, data)
    if why or not data.examples:
        outcome.note = why or "no pairs"
        return outcome
    prompts = [e.prompt for e in data.examples]
    a = [e.chosen if first else e.rejected for e, first in zip(data.examples, data.chosen_first)]
    b = [e.rejected if first else e.chosen for e, first in zip(data.examples, data.chosen_first)]
    started = time.perf_counter()
    prefs = judge.judge(prompts, a, b)
    outcome.seconds = time.perf_counter() - started
    right = 0.0
    for pref, first in zip(prefs, data.chosen_first):
        outcome.picks_chosen.append(pref.a_preferred == first)
        right += 0.5 if pref.score_a == pref.score_b else float(pref.a_preferred == first)
    outcome.accuracy = right / len(prefs)
    return outcome


def longer_share(data: DataSet, picks_chosen: list[bool] | None = None) -> float | None:
    """Among pairs whose answers differ in length, how often the longer one is picked: by a judge's picks,
    or (None) by the labels. Length is the classic shortcut a judge takes, so the report shows it."""
    rows = [
        (e, pick)
        for e, pick in zip(data.examples, picks_chosen or [True] * len(data.examples))
        if len(e.chosen) != len(e.rejected)
    ]
    if not rows:
        return None
    return sum((len(e.chosen) > len(e.rejected)) == pick for e, pick in rows) / len(rows)


def agreement(x: Outcome, y: Outcome) -> float | None:
    """How often two judges prefer the same response of a pair."""
    if x.accuracy is None or y.accuracy is None or not x.picks_chosen:
        return None
    return sum(p == q for p, q in zip(x.picks_chosen, y.picks_chosen)) / len(x.picks_chosen)


# --- report --------------------------------------------------------------------------------------


def format_accuracy(o: Outcome) -> str:
    return o.note if o.accuracy is None else f"{100 * o.accuracy:.1f}%"


def render_report(datasets: list[DataSet], names: list[str], outcomes: list[Outcome]) -> str:
    by = {(o.judge, o.data): o for o in outcomes}
    lines = [
        "Accuracy (agreement with the human/gold label; ties count half) and throughput:",
        "",
        "| judge | " + " | ".join(f"{d.name} (n={len(d.examples)})" for d in datasets) + " | pairs/s |",
        "|---|" + "---|" * (len(datasets) + 1),
    ]
    for name in names:
        cells = [format_accuracy(by[(name, d.name)]) for d in datasets]
        speeds = [by[(name, d.name)].pairs_per_s for d in datasets]
        speed = " / ".join(f"{s:.1f}" if s else "-" for s in speeds)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {speed} |")
    for d in datasets:
        scored = [n for n in names if by[(n, d.name)].accuracy is not None]
        if len(scored) < 2:
            continue
        lines += [
            "",
            f"Pairwise agreement on {d.name} (share of pairs where both judges prefer the same response):",
            "",
            "| | " + " | ".join(scored) + " |",
            "|---|" + "---|" * len(scored),
        ]
        for x in scored:
            row = [f"{100 * agreement(by[(x, d.name)], by[(y, d.name)]):.0f}%" for y in scored]
            lines.append(f"| {x} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Length bias (among pairs whose answers differ in length, how often the longer one is picked):",
        "",
        "| | " + " | ".join(d.name for d in datasets) + " |",
        "|---|" + "---|" * len(datasets),
    ]
    for name, picks in [("labels", None)] + [(n, n) for n in names]:
        cells = []
        for d in datasets:
            o = by[(picks, d.name)] if picks else None
            share = None if o is not None and o.accuracy is None else longer_share(d, o.picks_chosen if o else None)
            cells.append("-" if share is None else f"{100 * share:.0f}%")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report_file(table: str, args, world: DemoWorld, threads: int, seconds: float) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    limit = getattr(args, "limit", None)
    command = "python launch.py judge-eval" + (f" --limit {limit}" if limit else "")
    return (
        f"# Judge evaluation\n\nProduced by `{command}` on {when} in {seconds:.0f} s, {threads} CPU "
        f"thread{'s' if threads != 1 else ''}{' + CUDA' if torch.cuda.is_available() else ''}; demo world at "
        f"`{world.root}` ({world.fingerprint()}). Pairs/s include no model loading or training.\n\n"
        f"{table}\n## What the judges are here\n\n{NOTES}"
    )
