"""Typed records that cross the storage boundary. Everything stored or read is one of these."""

from __future__ import annotations

from dataclasses import dataclass, field

Messages = list[dict]  # [{"role": "user"|"assistant"|"system", "content": str}, ...]

ROLES = ("seed", "pool", "eval")
LABELS = ("a", "b", "tie", "both_bad")  # which response is preferred; tie/both_bad are not trained on
# the review queue's orders (storage.pairs._review_sql): flagged then least confident, the judges disagree first,
# newest first, most confident first, and the round's blind audit sample only, in its random draw order
REVIEW_ORDERS = ("uncertain", "disagree", "newest", "confident", "audit")
LABEL_VIA = ("review", "audit")  # where a label was given: the review queue, or blind in the audit order
LABEL_SOURCES = ("seed", "self", "human", "gold", "accepted")  # accepted: a self label confirmed in bulk, unread
SEED_ANSWER_SOURCES = ("model", "human")  # a seed prompt's answer: sampled from the project's model, or written
SEED_STATUSES = ("ranked", "equal", "skip")  # a person's decision on a seed prompt's answers (storage.seed)
JOB_STATES = ("queued", "running", "paused", "done", "failed", "stopped", "interrupted")


@dataclass
class Project:
    name: str
    model: str = ""
    folder: str = ""
    created_at: str = ""
    id: int | None = None
    guidelines: str = ""  # annotation guidelines shown beside every pair under review


@dataclass
class Example:
    """One imported row, normalised: a prompt as chat messages (ending with the user's turn) and,
    for seed/eval pairs, the final chosen and rejected assistant answers."""

    role: str
    prompt: Messages
    chosen: str | None = None
    rejected: str | None = None
    source_file: str = ""
    source_line: int = 0
    conversational: bool = False
    id: int | None = None
    project_id: int | None = None
    label_source: str | None = None  # Store.seed_pairs only: "seed" (uploaded pair) or "human" (ranked seed prompt)

    @property
    def is_seed_prompt(self) -> bool:
        """A seed example without a pair: the seed builder samples answers for it and a person ranks them."""
        return self.role == "seed" and self.chosen is None and self.rejected is None

    @property
    def prompt_text(self) -> str:
        return "\n".join(m["content"] for m in self.prompt)


@dataclass
class Pair:
    """Two sampled responses to one prompt, with everything the judge and the trainer said of them."""

    job_id: int
    round: int
    prompt: Messages
    response_a: str
    response_b: str
    example_id: int | None = None
    project_id: int | None = None
    tokens_a: int | None = None
    tokens_b: int | None = None
    logp_policy_a: float | None = None  # logp under π_{i-1}
    logp_policy_b: float | None = None
    logp_init_a: float | None = None  # logp under π_init
    logp_init_b: float | None = None
    reward_a: float | None = None  # β·(logp_policy − logp_init)
    reward_b: float | None = None
    margin: float | None = None  # r_chosen − r_rejected ≥ 0
    confidence: float | None = None  # σ(margin) ∈ [0.5, 1]
    judge_label: str | None = None  # what the judge said: 'a' | 'b'
    label: str | None = None  # the label in force: one of LABELS
    label_source: str | None = None  # one of LABEL_SOURCES
    human_response: str | None = None  # a better answer written by a person
    ext_margin: float | None = None  # β·h_ḡ from de-coupled noise detection
    noisy: bool | None = None  # flagged by noise detection after the warm-up: its soft label was smoothed
    warmup_flag: bool | None = None  # flagged during the α = 0 warm-up: recorded, but it changed nothing
    gold_a: float | None = None  # gold reward, demo world only
    gold_b: float | None = None
    id: int | None = None


@dataclass
class LabelEvent:
    pair_id: int
    old_label: str | None
    new_label: str
    old_source: str | None
    new_source: str
    actor: str = "human"
    note: str = ""
    at: str = ""
    id: int | None = None
    old_response: str | None = None  # the written answer before and after (undo restores it)
    new_response: str | None = None
    old_noisy: bool | None = None
    undoes: int | None = None  # the event this one reverts
    action: int | None = None  # the first event of its action (one label, one bulk accept, one undo)
    via: str | None = None  # one of LABEL_VIA where set_label wrote it; None: an undo, or written before v8


@dataclass(frozen=True)
class AuditAnswer:
    """A person's first blind label of one audit pair, beside what the judge had said."""

    pair_id: int
    person_label: str  # one of LABELS
    judge_label: str  # 'a' | 'b'
    event_id: int  # the label event that gave it


@dataclass
class SeedAnswer:
    """One answer to a seed prompt: sampled from the model (with its log-prob) or written by a person."""

    example_id: int
    sample_index: int  # position among the prompt's answers: model samples 0..N-1, written answers after them
    text: str
    logp: float | None = None  # logp(π_init, x, y): the sum of the answer's token log-probs, None for a written one
    tokens: int | None = None  # answer tokens the model generated, stop token included
    source: str = "model"  # one of SEED_ANSWER_SOURCES
    created_at: str = ""
    id: int | None = None


@dataclass
class SeedRanking:
    """One action of a person on a seed prompt: ranked (best and worst), equal (all answers alike) or skip. The
    latest action not undone is the one in force."""

    project_id: int
    example_id: int
    status: str  # one of SEED_STATUSES
    actor: str
    best_answer_id: int | None = None
    worst_answer_id: int | None = None
    order: list[int] = field(default_factory=list)  # ranked: answer ids best, the middle (unordered), worst
    created_at: str = ""
    undone_at: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class SeedProgress:
    """Where a project's seed stands: its uploaded pairs and, of its seed prompts, how many wait for answers, wait
    for a person, and were decided."""

    uploaded_pairs: int
    prompts: int
    without_answers: int
    unranked: int  # has answers, no decision in force
    ranked: int
    equal: int
    skipped: int

    @property
    def seed_pairs(self) -> int:
        """Pairs the seed round trains on: the uploaded ones and one per ranked prompt."""
        return self.uploaded_pairs + self.ranked


@dataclass
class Job:
    project_id: int
    kind: str  # run | export
    config_yaml: str = ""
    status: str = "queued"
    stage: str = ""
    round: int | None = None
    progress_done: int = 0
    progress_total: int = 0
    eta_s: float | None = None
    heartbeat_at: str | None = None
    pid: int | None = None
    worker: str | None = None
    worker_started: float | None = None  # the worker process's start time (psutil create_time): PID reuse shows
    auto_resumes: int = 0  # how often a worker resumed it after an interruption
    stop_requested: bool = False
    error: str = ""
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    id: int | None = None


@dataclass
class Round:
    job_id: int
    round: int
    status: str = "pending"  # pending | running | review | done | stopped | failed | interrupted
    stages_done: list[str] = field(default_factory=list)
    adapter_path: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    id: int | None = None


@dataclass
class Metric:
    job_id: int
    name: str
    value: float
    step: int = 0
    round: int | None = None
    stage: str = ""
    at: str = ""
    id: int | None = None


@dataclass
class Artifact:
    project_id: int
    kind: str  # adapter | model | checkpoint | dataset
    path: str
    job_id: int | None = None
    round: int | None = None
    meta: dict = field(default_factory=dict)
    created_at: str = ""
    id: int | None = None
