"""The seed builder as the studio asks for it (storage.seed holds the rules): queue the `seed-answers` job that
samples N answers per seed prompt, show one prompt with its answers (their log-probs, token counts and, on a world
that has them, instruction checks), record a person's decision on it (best and worst, a better answer written,
all equal, skip), undo the person's own last decision, and count where the seed stands.

Every refusal is an ActionError that names the prompt or answer, and changes nothing (the store checks a decision
inside its transaction)."""

from __future__ import annotations

from dataclasses import asdict

import yaml

from app.actions.job_queue import ACTIVE, job_status
from app.actions.lookups import ActionError, opened, project_of, shortened
from engine.config import ConfigError
from engine.runtime.jobs import SEED_ANSWERS
from engine.runtime.seed_answers import SeedAnswersRequest, project_config
from engine.worlds import world_of
from storage import Example, Job, Project, Store
from storage.records import SeedRanking

SEED_PAIR_COLUMNS = ["prompt id", "prompt", "best", "worst", "who", "when"]


def _refused(call, *args):
    """A store call whose ValueError (NotFound included) is the person's to read."""
    try:
        return call(*args)
    except ActionError:
        raise
    except ValueError as e:
        raise ActionError(str(e)) from None


def _int(value, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ActionError(f"{what} must be a whole number, not {value!r}") from None


def _progress(store: Store, proj: Project) -> dict:
    progress = store.seed_progress(proj.id)
    return {"project": proj.name, **asdict(progress), "seed_pairs": progress.seed_pairs}


def seed_progress(db: str, project: str) -> dict:
    """Where the project's seed stands: uploaded pairs, seed prompts, and of those how many wait for answers, wait
    for a person, were ranked, marked equal or skipped; seed_pairs: the pairs the seed round trains on."""
    with opened(db) as store:
        return _progress(store, project_of(store, project))


def seed_answers_job(db: str, project: str) -> dict | None:
    """The status (job_status) of the project's newest seed-answers job; None when it has none."""
    with opened(db) as store:
        proj = store.project((project or "").strip())
        sampling = [j.id for j in store.jobs(proj.id) if j.kind == SEED_ANSWERS] if proj else []
    return job_status(db, sampling[-1], log_lines=3) if sampling else None


def queue_seed_answers(db: str, project: str, samples: int = 4, config: str = "") -> dict:
    """Queue a `seed-answers` job: `samples` answers per seed prompt that has none, from the model of the project's
    latest saved configuration (or the one `config` names). Refused, with nothing queued, when the project has no
    seed prompts, every one has answers, one is queued or running already, or the configuration does not parse."""
    try:
        request = SeedAnswersRequest(project=(project or "").strip(), samples=_int(samples, "samples"), config=config)
    except ValueError as e:
        raise ActionError(str(e)) from None
    with opened(db) as store, store.write():
        proj = project_of(store, project)
        progress = store.seed_progress(proj.id)
        if not progress.prompts:
            raise ActionError(
                f"project {proj.name} has no seed prompts: import a seed file of prompts (no chosen or rejected "
                "answers) on the Project tab first"
            )
        if not progress.without_answers:
            raise ActionError(f"every one of the {progress.prompts} seed prompts of {proj.name} has answers already")
        busy = [j.id for j in store.jobs(proj.id, statuses=ACTIVE) if j.kind == SEED_ANSWERS]
        if busy:
            raise ActionError(f"job #{busy[0]} is sampling answers for {proj.name} already")
        try:
            model = project_config(store, proj, config).model
        except ConfigError as e:
            raise ActionError(str(e)) from None
        job_id = store.enqueue(
            Job(project_id=proj.id, kind=SEED_ANSWERS, config_yaml=yaml.safe_dump(asdict(request), sort_keys=False))
        )
        store.log(
            job_id,
            f"queued from the studio: {request.samples} answers for each of {progress.without_answers} seed "
            f"prompts of {proj.name} from {model}",
        )
    return {
        "job_id": job_id,
        "project": proj.name,
        "status": "queued",
        "samples": request.samples,
        "prompts": progress.without_answers,
        "model": model,
    }


def _checker(store: Store, proj: Project):
    """The project's world's check of one answer (World.answer_checks); None when its configuration names no world
    or does not parse."""
    try:
        world = world_of(project_config(store, proj))
    except (ConfigError, ValueError):
        return None
    return world.answer_checks if world else None


def _ranking(ranking: SeedRanking | None) -> dict | None:
    if ranking is None:
        return None
    return {
        "id": ranking.id,
        "status": ranking.status,
        "best_answer_id": ranking.best_answer_id,
        "worst_answer_id": ranking.worst_answer_id,
        "order": ranking.order,
        "actor": ranking.actor,
        "created_at": ranking.created_at,
    }


def _prompt_view(store: Store, proj: Project, ex: Example | None) -> dict:
    """A seed prompt as the seed view and /seed_prompt show it: its messages, answers and the decision in force;
    example_id None (and no answers) when there is no prompt to show."""
    if ex is None:
        return {"example_id": None, "prompt": [], "answers": [], "ranking": None, "progress": _progress(store, proj)}
    check = _checker(store, proj)
    answers = [
        {
            "id": a.id,
            "position": position,
            "text": a.text,
            "logp": a.logp,
            "tokens": a.tokens,
            "source": a.source,
            "checks": check(ex.prompt, a.text) if check else None,
        }
        for position, a in enumerate(store.seed_answers(ex.id), 1)
    ]
    return {
        "example_id": ex.id,
        "prompt": ex.prompt,
        "answers": answers,
        "ranking": _ranking(store.seed_ranking(ex.id)),
        "progress": _progress(store, proj),
    }


def seed_prompt(db: str, project: str, example_id=None, after=None) -> dict:
    """One seed prompt of the project with its answers (id, position from 1, text, logp, tokens, source, checks)
    and the decision in force: the one `example_id` names, else the next with answers and no decision after the
    prompt `after` (wrapping around); example_id None when every prompt with answers is decided."""
    with opened(db) as store:
        proj = project_of(store, project)
        if example_id not in (None, ""):
            ex = _refused(store.seed_prompt, proj.id, _int(example_id, "example_id"))
        else:
            after = None if after in (None, "") else _int(after, "after")
            ex = store.next_unranked_seed_prompt(proj.id, after=after)
        return _prompt_view(store, proj, ex)


def _decided(store: Store, proj: Project, ranking: SeedRanking) -> dict:
    """A decision just recorded, with the prompt the person goes on to (the next undecided one after it)."""
    following = store.next_unranked_seed_prompt(proj.id, after=ranking.example_id)
    return {
        "example_id": ranking.example_id,
        "ranking": _ranking(ranking),
        "next_example_id": following.id if following else None,
        "progress": _progress(store, proj),
    }


def rank_seed(db: str, project: str, example_id, best_answer_id, worst_answer_id, actor: str) -> dict:
    """The person's best and worst of a seed prompt's answers (answer ids): the prompt becomes one seed pair."""
    with opened(db) as store:
        proj = project_of(store, project)
        example_id, best, worst = (
            _int(v, name)
            for v, name in ((example_id, "example_id"), (best_answer_id, "best"), (worst_answer_id, "worst"))
        )
        return _decided(store, proj, _refused(store.rank_seed, proj.id, example_id, best, worst, actor))


def write_seed_answer(db: str, project: str, example_id, text: str, worst_answer_id, actor: str) -> dict:
    """A better answer the person wrote for a seed prompt: it is the best, `worst_answer_id` the worst."""
    with opened(db) as store:
        proj = project_of(store, project)
        example_id, worst = _int(example_id, "example_id"), _int(worst_answer_id, "worst")
        return _decided(store, proj, _refused(store.write_seed_answer, proj.id, example_id, text or "", worst, actor))


def mark_seed(db: str, project: str, example_id, status: str, actor: str) -> dict:
    """Mark a seed prompt "equal" (its answers are all alike: no pair) or "skip" (leave it out of the seed)."""
    with opened(db) as store:
        proj = project_of(store, project)
        return _decided(store, proj, _refused(store.mark_seed, proj.id, _int(example_id, "example_id"), status, actor))


def undo_seed(db: str, project: str, actor: str) -> dict:
    """Take back `actor`'s own latest seed decision in the project; undone None when there is none left."""
    with opened(db) as store:
        proj = project_of(store, project)
        undone = _refused(store.undo_seed, proj.id, actor)
        return {
            "undone": _ranking(undone),
            "example_id": undone.example_id if undone else None,
            "ranking": _ranking(store.seed_ranking(undone.example_id)) if undone else None,
            "progress": _progress(store, proj),
        }


def seed_pair_rows(db: str, project: str) -> list[dict]:
    """The pairs the seed round takes from ranked prompts (best over worst), with who ranked each and when."""
    with opened(db) as store:
        proj = project_of(store, project)
        rankings = {
            r.example_id: r for r in store.seed_rankings(proj.id) if r.undone_at is None
        }  # oldest first: the last row per prompt is the one in force
        return [
            {
                "example_id": pair.id,
                "prompt": pair.prompt[-1]["content"] if pair.prompt else "",
                "best": pair.chosen,
                "worst": pair.rejected,
                "who": rankings[pair.id].actor if pair.id in rankings else "",
                "when": rankings[pair.id].created_at if pair.id in rankings else "",
            }
            for pair in store.seed_pairs(proj.id)
            if pair.label_source == "human"
        ]


def seed_pair_table(rows: list[dict]) -> list[list]:
    """seed_pair_rows as table cells (SEED_PAIR_COLUMNS), each text on one short line."""
    return [
        [r["example_id"], shortened(r["prompt"], 120), shortened(r["best"]), shortened(r["worst"])]
        + [r["who"], r["when"][:19].replace("T", " ")]
        for r in rows
    ]
