"""The judges beside SPA's own, behind the same `Judge` interface, so they can replace it in a round and be
compared with it on the same held-out labelled pairs (the paper's baselines):

- DensityRatioJudge (Dr.SoW): r = logp(strong, x, y) − logp(weak, x, y), with optional per-domain system prompts.
- RewardModelJudge: an external sequence-classification checkpoint; the score is its single logit.
- LLMJudge: the model is asked which answer is better; both orders are read and averaged to cancel position bias.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable

import torch

from engine.method import scoring
from engine.method.encoding import prompt_ids, response_ids
from engine.method.judges import GoldJudge, ImplicitRewardJudge, Preference, preferences_from_scores
from storage.records import Messages

Progress = Callable[[int, int], None]

DOMAINS = ("safety", "reasoning", "chat")
EXTERNAL_KINDS = ("density_ratio", "reward_model", "llm_judge")

# Checked in order: a harmful request stays a safety question even when it involves arithmetic.
_ROUTES: tuple[tuple[str, re.Pattern], ...] = (
    (
        "safety",
        re.compile(
            r"\b(kill\w*|murder\w*|weapons?|guns?|bombs?|explosives?|poison\w*|drugs?|meth|cocaine|heroin|steal\w*|"
            r"rob|robbery|shoplift\w*|hack\w*|malware|ransomware|phishing|suicid\w*|self[- ]harm|hurt\w*|harm|harmful|"
            r"abuse\w*|assault\w*|violen\w*|terror\w*|racist|racism|slurs?|hate|illegal\w*|fraud\w*|scam\w*|"
            r"launder\w*|kidnap\w*|stalk\w*|revenge|torture\w*)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "reasoning",
        re.compile(
            r"(\b(math\w*|calculat\w*|compute|solve|solution|prove|proof|equations?|integrals?|derivatives?|"
            r"algebra|geometry|probability|logic\w*|puzzles?|riddles?|step[- ]by[- ]step|how many|how much|"
            r"code|coding|program\w*|functions?|algorithms?|python|javascript|sql|debug\w*)\b"
            r"|\d+\s*[-+*/^=]\s*\d+)",
            re.IGNORECASE,
        ),
    ),
)


def route_domain(prompt_text: str) -> str:
    """Which domain's system prompt a request gets: a regular-expression keyword router (`_ROUTES`, checked in
    order: safety words, then reasoning words or an arithmetic expression), cheap and predictable, and not the
    authors' routing; anything that is neither a safety nor a reasoning request is chat."""
    for domain, pattern in _ROUTES:
        if pattern.search(prompt_text):
            return domain
    return "chat"


def user_text(prompt: Messages) -> str:
    """What the person asked: the user turns of a conversation (what the router reads)."""
    return "\n".join(m["content"] for m in prompt if m.get("role") == "user")


def _check_domains(system_prompts: dict[str, str]) -> None:
    unknown = sorted(set(system_prompts) - set(DOMAINS))
    if unknown:
        raise ValueError(f"judge.system_prompts has unknown domains {unknown}; use {', '.join(DOMAINS)}")


@dataclass
class DensityRatioJudge:
    """Dr.SoW's density ratio: r(x, y) = logp(strong, x, y) − logp(weak, x, y), with no β, for any two models that
    share a vocabulary (e.g. an instruct model over its base). SPA's own judge is the special case
    strong = π_{i-1}, weak = π_init (engine.method.judges.ImplicitRewardJudge, which gets both from one LoRA model).

    With `system_prompts`, each prompt is routed to a domain (safety / reasoning / chat) and that domain's
    system prompt is prepended as a system message before both models score it; a conversation that already
    has a system message keeps its own (the routing is `route_domain`'s regular expressions, not the authors'
    classifier)."""

    strong: torch.nn.Module
    weak: torch.nn.Module
    tokenizer: object
    weak_tokenizer: object | None = None  # None: the strong model's tokenizer
    system_prompts: dict[str, str] = field(default_factory=dict)
    batch_size: int = 16
    seed: int = 0  # best_of_n's random rejected sample
    name: str = "density_ratio"

    def __post_init__(self):
        _check_domains(self.system_prompts)

    def with_system_prompt(self, prompt: Messages) -> Messages:
        if not self.system_prompts or any(m.get("role") == "system" for m in prompt):
            return prompt
        text = self.system_prompts.get(route_domain(user_text(prompt)))
        return [{"role": "system", "content": text}] + list(prompt) if text else prompt

    def rewards(self, prompts: list[Messages], responses: list[str], progress: Progress | None = None) -> torch.Tensor:
        """r for each (prompt, response), float64."""
        shown = [self.with_system_prompt(p) for p in prompts]
        n = len(shown)

        def part(offset):
            return None if progress is None else (lambda done, total: progress(offset + done, 2 * n))

        strong = scoring.sequence_logps(self.strong, self.tokenizer, shown, responses, self.batch_size, part(0))
        weak = scoring.sequence_logps(
            self.weak, self.weak_tokenizer or self.tokenizer, shown, responses, self.batch_size, part(n)
        )
        return torch.tensor(strong, dtype=torch.float64) - torch.tensor(weak, dtype=torch.float64)

    def judge(self, prompts, responses_a, responses_b, progress=None) -> list[Preference]:
        if not len(prompts) == len(responses_a) == len(responses_b):
            raise ValueError("prompts, responses_a and responses_b must have the same length")
        r = self.rewards(prompts + prompts, responses_a + responses_b, progress)
        return preferences_from_scores(r[: len(prompts)], r[len(prompts) :])

    def best_of_n(
        self,
        prompts: list[Messages],
        samples: list[list[str]],
        progress: Progress | None = None,
        seed: int | None = None,
    ) -> list[tuple[int, int] | None]:
        """(chosen, rejected) indices per prompt: chosen = the highest r (the first on ties), rejected = a
        uniformly random other sample whose text differs from the chosen one (a pair of equal texts would be
        dropped), drawn from an RNG seeded with `seed` (default: the judge's), so a call is reproducible.
        None: all samples are the same text."""
        if len(prompts) != len(samples):
            raise ValueError(f"{len(prompts)} prompts but {len(samples)} sample lists")
        if any(len(group) < 2 for group in samples):
            raise ValueError("best_of_n needs at least two samples per prompt")
        flat_prompts = [p for p, group in zip(prompts, samples) for _ in group]
        flat = [s for group in samples for s in group]
        r = self.rewards(flat_prompts, flat, progress).tolist()
        rng = random.Random(self.seed if seed is None else seed)
        picks: list[tuple[int, int] | None] = []
        start = 0
        for group in samples:
            scores = r[start : start + len(group)]
            start += len(group)
            chosen = max(range(len(group)), key=lambda k: (scores[k], -k))
            others = [k for k in range(len(group)) if group[k] != group[chosen]]
            picks.append((chosen, rng.choice(others)) if others else None)
        return picks


def first_distinct_pair(texts: list[str]) -> tuple[int, int] | None:
    """Section 1's pair without a selecting judge: the first sample and the first later one that differs
    from it; None when every sample is the same text (the pair is dropped)."""
    return next(((0, k) for k in range(1, len(texts)) if texts[k] != texts[0]), None)


def select_pairs(
    prompts: list[Messages],
    samples: list[list[str]],
    selector: DensityRatioJudge | ImplicitRewardJudge | GoldJudge | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
    policy_logps: list[list[float | None]] | None = None,
) -> list[tuple[int, int] | None]:
    """Which two of each prompt's samples become its pair (indices; None: drop the prompt). With a selecting
    judge and more than two samples, best-of-N; otherwise the first two that differ. policy_logps: the
    samples' π_{i-1} log-probs as sampling kept them, which the implicit judge reuses."""
    if selector is None or all(len(group) <= 2 for group in samples):
        return [first_distinct_pair(group) for group in samples]
    if isinstance(selector, DensityRatioJudge):
        return selector.best_of_n(prompts, samples, progress, seed)
    return selector.best_of_n(prompts, samples, policy_logps, progress)


@dataclass
class RewardModelJudge:
    """An external reward model: a sequence-classification checkpoint with one output (num_labels = 1).
    Prompt and response are rendered with the reward model's own chat template when it has one (that is
    what such models are trained on), else the engine's plain prompt encoding; the score is the logit."""

    model: torch.nn.Module
    tokenizer: object
    batch_size: int = 16
    max_length: int | None = None  # keep the last max_length tokens (the answer) when set
    name: str = "reward_model"

    def __post_init__(self):
        labels = getattr(self.model.config, "num_labels", 1)
        if labels != 1:
            raise ValueError(f"a reward model has one output (num_labels = 1); this checkpoint has {labels}")
        if self.model.config.pad_token_id is None:  # batched pooling finds each row's end by its padding
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def encode(self, prompt: Messages, response: str) -> list[int]:
        if getattr(self.tokenizer, "chat_template", None):
            ids = list(
                self.tokenizer.apply_chat_template(
                    list(prompt) + [{"role": "assistant", "content": response}], tokenize=True, return_dict=False
                )
            )
        else:
            ids = prompt_ids(self.tokenizer, prompt) + response_ids(self.tokenizer, response)
        return ids[-self.max_length :] if self.max_length else ids

    def scores(self, prompts: list[Messages], responses: list[str], progress: Progress | None = None) -> torch.Tensor:
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses)]
        pad_id = self.model.config.pad_token_id
        device = next(self.model.parameters()).device
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        out = torch.zeros(len(encoded), dtype=torch.float64)
        with scoring.eval_mode(self.model):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                # right padding: a causal model's last real token never sees it
                input_ids, mask = scoring.right_pad([encoded[i] for i in chunk], pad_id)
                logits = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
                out[chunk] = logits[:, 0].double().cpu()
                if progress is not None:
                    progress(min(start + self.batch_size, len(order)), len(order))
        return out

    def judge(self, prompts, responses_a, responses_b, progress=None) -> list[Preference]:
        if not len(prompts) == len(responses_a) == len(responses_b):
            raise ValueError("prompts, responses_a and responses_b must have the same length")
        s = self.scores(prompts + prompts, responses_a + responses_b, progress)
        return preferences_from_scores(s[: len(prompts)], s[len(prompts) :])


LLM_JUDGE_TEMPLATE = (
    "Which response to the conversation below is better: more helpful, more correct and more harmless?\n\n"
    "[Conversation]\n{conversation}\n\n"
    "[Response {first}]\n{response_first}\n\n"
    "[Response {second}]\n{response_second}\n\n"
    "Answer with one character: {first} or {second}."
)


@dataclass(frozen=True)
class AnswerTokens:
    first: str
    second: str
    first_id: int
    second_id: int


def answer_tokens(tokenizer) -> AnswerTokens:
    """The two answer labels and the token each starts with: "A"/"B" when they encode to two different
    known tokens, else "1"/"2"."""
    for first, second in (("A", "B"), ("1", "2")):
        ids = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in (first, second)]
        if all(ids) and ids[0][0] != ids[1][0] and tokenizer.unk_token_id not in (ids[0][0], ids[1][0]):
            return AnswerTokens(first, second, ids[0][0], ids[1][0])
    raise ValueError("the tokenizer has no distinct tokens for A/B or 1/2; it cannot serve as an LLM judge")


def render_conversation(prompt: Messages) -> str:
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


@dataclass
class LLMJudge:
    """LLM-as-judge: the model reads a fixed template holding the conversation and both answers and we read
    the next-token logits of the two answer labels. Each pair is asked in both orders; with d = l_first −
    l_second, P(a better) is σ(d) in the order (a, b) and σ(−d') in the order (b, a), and their mean p_a
    cancels position bias: score_a = p_a, score_b = 1 − p_a, so judge(a, b) mirrors judge(b, a) exactly."""

    model: torch.nn.Module
    tokenizer: object
    batch_size: int = 8
    template: str = LLM_JUDGE_TEMPLATE
    name: str = "llm_judge"
    labels: AnswerTokens = field(init=False)

    def __post_init__(self):
        self.labels = answer_tokens(self.tokenizer)

    def question(self, prompt: Messages, response_first: str, response_second: str) -> Messages:
        text = self.template.format(
            conversation=render_conversation(prompt),
            response_first=response_first,
            response_second=response_second,
            first=self.labels.first,
            second=self.labels.second,
        )
        return [{"role": "user", "content": text}]

    def order_probabilities(
        self, prompts: list[Messages], responses_a: list[str], responses_b: list[str], progress: Progress | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """P(a better) read in the order (a, b) and in the order (b, a), each over the two labels only."""
        if not len(prompts) == len(responses_a) == len(responses_b):
            raise ValueError("prompts, responses_a and responses_b must have the same length")
        questions = [self.question(p, a, b) for p, a, b in zip(prompts, responses_a, responses_b)] + [
            self.question(p, b, a) for p, a, b in zip(prompts, responses_a, responses_b)
        ]
        sequences = [prompt_ids(self.tokenizer, q) for q in questions]
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        logits = next_token_logits(self.model, sequences, pad_id, self.batch_size, progress)
        d = (logits[:, self.labels.first_id] - logits[:, self.labels.second_id]).double()
        n = len(prompts)
        return torch.sigmoid(d[:n]), torch.sigmoid(-d[n:])

    def judge(self, prompts, responses_a, responses_b, progress=None) -> list[Preference]:
        p_ab, p_ba = self.order_probabilities(prompts, responses_a, responses_b, progress)
        p_a = (p_ab + p_ba) / 2
        return preferences_from_scores(p_a, 1 - p_a)


def next_token_logits(
    model, sequences: list[list[int]], pad_id: int, batch_size: int = 8, progress: Progress | None = None
) -> torch.Tensor:
    """The logits after the last token of each sequence, float32 on the CPU, in input order. Left padding
    with position ids that follow the mask, so padding changes nothing."""
    if any(not s for s in sequences):
        raise ValueError("an empty sequence has no next token to predict")
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
    out: list[torch.Tensor | None] = [None] * len(sequences)
    keep = {"logits_to_keep": 1} if scoring.accepts_logits_to_keep(model) else {}
    with scoring.eval_mode(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            input_ids, mask = scoring.left_pad([sequences[i] for i in chunk], pad_id)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = (
                model(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    position_ids=positions.to(device),
                    use_cache=False,
                    **keep,
                )
                .logits[:, -1]
                .float()
                .cpu()
            )
            for row, i in enumerate(chunk):
                out[i] = logits[row]
            if progress is not None:
                progress(min(start + batch_size, len(order)), len(order))
    return torch.stack(out)


def load_reward_model(path: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """A sequence-classification checkpoint and its tokenizer, in eval mode. Safetensors only."""
    from transformers import AutoModelForSequenceClassification

    from engine.method.models import load_tokenizer

    tokenizer = load_tokenizer(path, trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer
