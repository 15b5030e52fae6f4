"""SPA rounds as idempotent stages: prepare → seed DPO → evaluate, then per round generate → judge →
(review gate) → train → evaluate, and finalize. Each stage reads and writes storage only, so a stage that
was killed can simply run again."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from engine.config import PATH_KEYS, RunConfig
from engine.method import generation, scoring
from engine.method.evaluation import (
    AnswerScores,
    EvalSettings,
    Gold,
    answer_rewards,
    gold_comparison,
    init_samples,
    judge_accuracy,
    round_pair_stats,
    sample_eval,
    save_answers,
)
from engine.method.judges import ImplicitRewardJudge
from engine.method.preference_data import TrainRow
from engine.method.trainer import RefineSettings, TrainSettings, train_dpo
from engine.runtime import auto_judge, checkpoints
from engine.runtime.context import StageCallback, StageContext, Stopped
from engine.runtime.distributed import barrier, shard_indices
from engine.runtime.jobs import StageRef, plan  # noqa: F401  (the plan lives where the worker reads it without torch)
from engine.runtime.judge_setup import judge_from_config, pair_selector
from engine.runtime.round_data import draw_audit, fill_missing_reference, training_rows
from engine.worlds import gold_reward_of, resolve_path, world_of
from storage import Artifact, Pair
from storage.records import Messages

GENERATE_CHUNK = 64  # prompts per committed chunk: a resumed generate stage redoes at most one chunk
JUDGE_CHUNK = 256


def paths(cfg: RunConfig) -> dict[str, str]:
    """The run's files with a world's prefixed names resolved to that world's files."""
    return {key: resolve_path(getattr(cfg, key)) for key in PATH_KEYS}


def load(ctx: StageContext, round: int | None, **kw) -> checkpoints.Policy:
    verify(ctx, round)
    return checkpoints.load_policy(ctx.cfg, paths(ctx.cfg)["model"], ctx.out_dir, round, **kw)


def verify(ctx: StageContext, round: int | None) -> None:
    """A saved round's files are all there and unchanged since they were saved (SHA-256 from its artifact)."""
    if round is None or round < 0:
        return
    folder = checkpoints.saved_weights(ctx.out_dir, round, ctx.cfg)
    kind = "adapter" if ctx.cfg.lora.enabled else "model"
    saved = [
        a
        for a in ctx.store.artifacts(ctx.project_id, kind, ctx.job_id)
        if a.round == round and a.path == str(folder.resolve())
    ]
    checkpoints.verify_saved(folder, ctx.cfg.lora.enabled, saved[-1].meta.get("sha256") if saved else None)


def train_settings(ctx: StageContext) -> TrainSettings:
    return TrainSettings.for_round(ctx.cfg, ctx.round, processes=ctx.ranks.world_size)


# stages -------------------------------------------------------------------------------------------------


def stage_prepare(ctx: StageContext) -> None:
    """Set up the world the config names (build it or find it cached), and import the config's data into the
    project."""
    from engine.data.importers import load_examples

    cfg = ctx.cfg
    world = world_of(cfg)
    if world:
        world.setup(lambda done, total: ctx.progress(done, total))
    p = paths(cfg)
    for key, role in (("seed_data", "seed"), ("prompt_pool", "pool"), ("eval_data", "eval")):
        if not p[key]:
            continue
        result = load_examples(p[key], role)
        added, skipped = ctx.store.add_examples(ctx.project_id, result.examples)
        ctx.log(
            f"{p[key]}: {result.format}, {added} {role} rows imported, {skipped} already present, "
            f"{len(result.duplicates)} duplicates skipped"
        )
    if not ctx.store.seed_pairs(ctx.project_id):
        raise ValueError(
            "the project has no seed pairs: import some, set seed_data, or rank the answers sampled "
            "for its seed prompts"
        )


def stage_seed(ctx: StageContext) -> None:
    """π_0 = DPO(init = π_init, reference = π_init, data = seed pairs): plain sigmoid DPO. The seed pairs are the
    uploaded ones and one (best, worst) pair per seed prompt a person ranked."""
    seeds = ctx.store.seed_pairs(ctx.project_id)
    policy = load(ctx, None, trainable=True)
    prompts = [e.prompt for e in seeds]
    with policy.init_view() as init:
        ref_c, ref_r = scoring.pair_logps(
            init,
            policy.tokenizer,
            prompts,
            [e.chosen for e in seeds],
            [e.rejected for e in seeds],
            ctx.cfg.judge.batch_size,
        )
    rows = [
        TrainRow(
            pair_id=None,
            prompt=e.prompt,
            chosen=e.chosen,
            rejected=e.rejected,
            ref_chosen_logp=c,
            ref_rejected_logp=r,
            trusted=True,
        )
        for e, c, r in zip(seeds, ref_c, ref_r)
    ]
    ctx.log(f"seed DPO on {len(rows)} pairs, {ctx.cfg.epochs} epochs, lr {ctx.cfg.learning_rate:g}")
    state_dict = None
    if ctx.cfg.epochs > 0:
        result = train_dpo(
            policy.model,
            policy.tokenizer,
            rows,
            train_settings(ctx),
            None,
            reference="adapters_disabled" if ctx.cfg.lora.enabled else "model",
            ref_model=policy.init_model,
            callbacks=[StageCallback(ctx)],
        )
        if result.stopped:
            raise Stopped()
        state_dict = result.state_dict
    if ctx.ranks.is_main:
        saved = checkpoints.save_policy(policy, ctx.cfg, ctx.out_dir, 0, state_dict)
        register(ctx, saved, 0)


def prompt_slice(ctx: StageContext) -> list:
    """Round i's fresh slice of the pool; once the pool runs out it wraps around (logged)."""
    pool = ctx.store.examples(ctx.project_id, "pool")
    if not pool:
        raise ValueError("the project has no pool prompts: import some or set prompt_pool")
    offset = sum(ctx.cfg.prompts_for_round(j) for j in range(1, ctx.round))
    n = min(ctx.cfg.prompts_for_round(ctx.round), len(pool))
    if offset + n > len(pool):
        ctx.log(f"the pool has {len(pool)} prompts; round {ctx.round} wraps around to its start", "warning")
    return [pool[(offset + k) % len(pool)] for k in range(n)]


def stage_generate(ctx: StageContext) -> None:
    """samples_per_prompt samples per prompt from π_{i-1} with the configured backend (transformers or vLLM);
    the pair is the first two that differ, or with more than two samples best-of-N under the run's judge
    (implicit, density ratio or gold); all-equal samples drop."""
    from engine.method.baseline_judges import select_pairs
    from engine.method.generation_vllm import round_sampler

    cfg = ctx.cfg
    # this round's prompts in chunks; the chunks a killed attempt already wrote are skipped
    prompts = prompt_slice(ctx)
    done_ids = {p.example_id for p in ctx.store.pairs(ctx.job_id, ctx.round)}
    chunks = [prompts[k : k + GENERATE_CHUNK] for k in range(0, len(prompts), GENERATE_CHUNK)]
    todo = [(i, c) for i, c in enumerate(chunks) if not any(e.id in done_ids for e in c)]
    if not todo:
        record_dropped(ctx, prompts, 0, 0)
        return
    # the sampler on π_{i-1}, the gold reward (stored beside each pair) and the best-of-N selector
    policy = functools.cache(lambda: load(ctx, ctx.round - 1))  # the sampler and an implicit selector share it
    verify(ctx, ctx.round - 1)  # the vLLM sampler reads the files itself
    sampler = round_sampler(
        cfg, paths(cfg)["model"], checkpoints.saved_weights(ctx.out_dir, ctx.round - 1, cfg), policy
    )
    ctx.log(f"sampling with {sampler.note}")
    gold = gold_reward_of(cfg)
    selector = pair_selector(cfg, paths(cfg)["model"], policy, gold)
    # per chunk: sample, pick each prompt's pair (or drop all-equal samples), write the pairs
    dropped, written = 0, 0
    per_prompt = cfg.generation.samples_per_prompt
    total = len(prompts) * per_prompt  # progress counts sequences, so a stop is noticed after every batch
    done = (len(prompts) - sum(len(c) for _, c in todo)) * per_prompt
    ctx.progress(done, total, force=True)
    for index, chunk in todo:
        settings = generation.SamplingSettings(
            samples_per_prompt=per_prompt,
            temperature=cfg.generation.temperature,
            top_p=cfg.generation.top_p,
            max_new_tokens=cfg.generation.max_new_tokens,
            batch_size=cfg.generation.batch_size,
            seed=cfg.seed * 1_000_003 + ctx.round * 10_007 + index,
        )
        samples = sampler.generate(
            [e.prompt for e in chunk], settings, progress=lambda n, _, base=done: ctx.progress(base + n, total)
        )
        done += len(chunk) * per_prompt
        picks = select_pairs(
            [e.prompt for e in chunk],
            [[s.text for s in group] for group in samples],
            selector,
            seed=settings.seed,
            policy_logps=[[s.logp for s in group] for group in samples],
        )
        pairs = []
        for ex, group, pick in zip(chunk, samples, picks):
            if pick is None:
                dropped += 1
                continue
            a, b = group[pick[0]], group[pick[1]]
            pairs.append(
                Pair(
                    job_id=ctx.job_id,
                    round=ctx.round,
                    prompt=ex.prompt,
                    response_a=a.text,
                    response_b=b.text,
                    example_id=ex.id,
                    project_id=ctx.project_id,
                    tokens_a=a.n_tokens,
                    tokens_b=b.n_tokens,
                    logp_policy_a=a.logp,
                    logp_policy_b=b.logp,
                    gold_a=gold(ex.prompt, a.text) if gold else None,
                    gold_b=gold(ex.prompt, b.text) if gold else None,
                )
            )
        written += ctx.store.add_pairs(pairs)
        ctx.progress(done, total)
    record_dropped(ctx, prompts, written, dropped)


def record_dropped(ctx: StageContext, prompts: list, written: int, dropped: int) -> None:
    """The round's dropped-identical count from what is stored, not this attempt's tally: a resumed stage skips
    the chunks done before it."""
    kept = {p.example_id for p in ctx.store.pairs(ctx.job_id, ctx.round)}
    dropped_in_all = sum(e.id not in kept for e in prompts)
    ctx.log(
        f"{written} pairs written, {dropped} identical pairs dropped"
        + (f" ({dropped_in_all} in the whole round)" if dropped_in_all != dropped else "")
    )
    ctx.metrics({"round/dropped_identical": dropped_in_all})


def stage_judge(ctx: StageContext) -> None:
    """Judge the round's pairs (judge.kind auto: then relabel them with the variant it picks), then draw its
    blind audit sample."""
    judge_pending(ctx)
    if ctx.cfg.judge.kind == auto_judge.KIND:
        auto_judge.relabel(ctx)
    draw_audit(ctx)


def judge_pending(ctx: StageContext) -> None:
    """Score every unjudged pair: the four log-probs (π_{i-1} and π_init for both responses) are always
    stored, since π_{i-1}'s are the training reference; the label comes from the configured judge."""
    pending = [p for p in ctx.store.pairs(ctx.job_id, ctx.round) if p.judge_label is None]
    if not pending:
        return
    n_pending = len(pending)
    if ctx.ranks.distributed:  # data parallel: each rank scores and writes its own block of the same list
        barrier(ctx.ranks)  # every rank has read the list before any rank writes
        pending = [pending[i] for i in shard_indices(n_pending, ctx.ranks.rank, ctx.ranks.world_size)]
    policy = load(ctx, ctx.round - 1)
    judge = judge_from_config(ctx.cfg, paths(ctx.cfg)["model"], lambda: policy)
    implicit = (
        judge
        if isinstance(judge, ImplicitRewardJudge)
        else ImplicitRewardJudge(policy, ctx.cfg.beta, ctx.cfg.judge.batch_size)
    )
    total = len(pending)
    for start in range(0, total, JUDGE_CHUNK):
        chunk = pending[start : start + JUDGE_CHUNK]
        args = ([p.prompt for p in chunk], [p.response_a for p in chunk], [p.response_b for p in chunk])
        sampled = [(p.logp_policy_a, p.logp_policy_b) for p in chunk]  # π_{i-1}'s, kept by the generate stage
        prefs = judge.judge(*args, policy_logps=sampled) if judge is implicit else judge.judge(*args)
        logps = prefs if judge is implicit else implicit.judge(*args, policy_logps=sampled)
        updates = {}
        for p, pref, lp in zip(chunk, prefs, logps):
            label = "a" if pref.a_preferred else "b"
            if judge.name == "gold" and pref.score_a == pref.score_b:
                label = "tie"  # gold prefers neither (common with IFEval's gold): nothing to train on
            values = dict(
                logp_policy_a=lp.logp_policy_a,
                logp_policy_b=lp.logp_policy_b,
                logp_init_a=lp.logp_init_a,
                logp_init_b=lp.logp_init_b,
                reward_a=pref.score_a,
                reward_b=pref.score_b,
                margin=pref.margin,
                confidence=pref.confidence,
                judge_label=label,
            )
            values.update(label=label, label_source="gold" if judge.name == "gold" else "self")
            updates[p.id] = values
        ctx.store.update_pairs(updates, keep_human=True)  # a person's label, even one set while this ran, wins
        ctx.progress(min(start + JUDGE_CHUNK, total), total)
    ctx.log(
        f"judged {n_pending} pairs with the {judge.name} judge"
        + (f" on {ctx.ranks.world_size} data-parallel ranks" if ctx.ranks.distributed else "")
    )


def stage_train(ctx: StageContext) -> None:
    """π_i from π_{i-1} with reference π_{i-1}, self-refinement loss and de-coupled noise detection."""
    cfg = ctx.cfg
    rows = training_rows(ctx)
    if not rows:
        raise ValueError(f"round {ctx.round} has no labelled pairs to train on")
    policy = load(ctx, ctx.round - 1, trainable=True, need_init=False)
    if not cfg.lora.enabled:
        policy.init_model = load(ctx, ctx.round - 1, need_init=False).model  # frozen π_{i-1} as reference
    policy.model.eval()
    fill_missing_reference(policy, rows, cfg.judge.batch_size)
    policy.model.train()
    refine = RefineSettings.for_round(cfg, ctx.round)
    trusted = sum(r.trusted for r in rows)
    ctx.log(
        f"training on {len(rows)} pairs ({trusted} human or gold), λ = {refine.lam:g}, refine "
        f"{'on' if refine.enabled else 'off'}"
    )
    result = train_dpo(
        policy.model,
        policy.tokenizer,
        rows,
        train_settings(ctx),
        refine,
        reference="ref_adapter" if cfg.lora.enabled else "model",
        ref_model=policy.init_model,
        callbacks=[StageCallback(ctx)],
    )
    if result.stopped:
        if ctx.ranks.is_main and result.state_dict is None:
            partial = ctx.round_dir(ctx.round) / "partial"
            policy.model.save_pretrained(partial, safe_serialization=True)
            ctx.log(f"stopped; the partly trained weights are kept under {partial}; a resume retrains the round")
        raise Stopped()
    if not ctx.ranks.is_main:  # rank 0 holds every rank's noise records and the trained weights
        return
    this_round = {p.id for p in ctx.store.pairs(ctx.job_id, ctx.round)}
    # a flag raised during the α = 0 warm-up changed nothing: kept apart, so it is not shown as acted upon
    ctx.store.update_pairs(
        {
            n.pair_id: {
                "ext_margin": n.ext_margin,
                "noisy": n.noisy and not n.warmup,
                "warmup_flag": n.noisy and n.warmup,
            }
            for n in result.noise
            if n.pair_id in this_round
        },
        keep_human=True,
    )  # corrections made while it trained
    saved = checkpoints.save_policy(policy, cfg, ctx.out_dir, ctx.round, result.state_dict)
    register(ctx, saved, ctx.round)
    shutil.rmtree(ctx.round_dir(ctx.round) / "partial", ignore_errors=True)  # a stopped attempt's weights


def stage_evaluate(ctx: StageContext) -> None:
    cfg = ctx.cfg
    s = EvalSettings(
        beta=cfg.beta,
        max_prompts=cfg.eval.max_prompts,
        temperature=cfg.generation.temperature,
        top_p=cfg.generation.top_p,
        max_new_tokens=cfg.generation.max_new_tokens,
        batch_size=cfg.generation.batch_size,
        seed=cfg.seed + 7,
    )
    evals = ctx.store.examples(ctx.project_id, "eval", limit=cfg.eval.max_prompts)
    gold = gold_reward_of(cfg)
    policy = load(ctx, ctx.round)
    values = round_pair_stats(ctx.store.pairs(ctx.job_id, ctx.round)) if ctx.round > 0 else {}
    labelled = [e for e in evals if e.chosen and e.rejected]
    values.update(judge_accuracy(policy, labelled, cfg.beta, cfg.judge.batch_size, cfg.judge.reference))
    ctx.progress(1, 3, force=True)
    if evals:
        prompts = [e.prompt for e in evals]
        texts = [x for x in sample_eval(policy, prompts, s)]
        values["eval/response_tokens"] = sum(x.n_tokens for x in texts) / len(texts)
        ctx.progress(2, 3, force=True)
        baseline = init_samples(policy, prompts, s, ctx.out_dir / "eval_init_samples.json")
        if gold:
            values.update(gold_comparison(prompts, [x.text for x in texts], baseline, gold))
        save_round_answers(ctx, policy, prompts, [x.text for x in texts], baseline, gold)
    world = world_of(cfg)
    if world:  # the world's own metrics (the text world: IFEval's, on its held-out splits)
        own = world.evaluate(policy, s, ctx.out_dir, lambda done, total: ctx.progress(done, total))
        values.update(own.metrics)
        if own.answers and not evals:  # the run's own eval prompts, where it has some, keep the answers file
            a = own.answers
            save_round_answers(ctx, policy, a.prompts, a.texts, a.init_texts, gold, a.checks, a.init_checks)
    ctx.metrics(values)
    ctx.progress(3, 3, force=True)
    ctx.log(", ".join(f"{k} {v:.3f}" for k, v in values.items()))


def save_round_answers(
    ctx: StageContext,
    policy: checkpoints.Policy,
    prompts: list[Messages],
    texts: list[str],
    init_texts: list[str],
    gold: Gold | None,
    checks: list[list[dict]] | None = None,
    init_checks: list[list[dict]] | None = None,
) -> None:
    """eval_answers_round_N.json: the round's and π_init's answers to the same held-out prompts, for the studio
    to show side by side, each with this round's implicit judge's score (π_init's own judge would score every
    answer 0), its gold where the world has one and the world's checks where it makes them."""
    cfg = ctx.cfg
    rewards = answer_rewards(
        policy, prompts + prompts, texts + init_texts, cfg.beta, cfg.judge.batch_size, cfg.judge.reference
    )
    scores = AnswerScores(
        judge=rewards[: len(prompts)], init_judge=rewards[len(prompts) :], beta=cfg.beta, reference=cfg.judge.reference
    )
    path = ctx.out_dir / f"eval_answers_round_{ctx.round}.json"
    save_answers(path, prompts, texts, init_texts, gold, scores, checks, init_checks)


def stage_finalize(ctx: StageContext) -> None:
    """A merged final model under output_dir/final that AutoModelForCausalLM.from_pretrained loads."""
    policy = load(ctx, ctx.round, need_init=False)
    final = ctx.out_dir / "final"
    tmp = final.with_name("final.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = policy.model.merge_and_unload() if ctx.cfg.lora.enabled else policy.model
    model.save_pretrained(tmp, safe_serialization=True)
    policy.tokenizer.save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    ctx.store.add_artifact(
        Artifact(
            project_id=ctx.project_id,
            job_id=ctx.job_id,
            round=ctx.round,
            kind="model",
            path=str(final.resolve()),
            meta={"sha256": checkpoints.file_hashes(final)},
        )
    )
    ctx.log(f"final model at {final}")


def register(ctx: StageContext, path: Path, round: int) -> None:
    kind = "adapter" if ctx.cfg.lora.enabled else "model"
    ctx.store.add_artifact(
        Artifact(
            project_id=ctx.project_id,
            job_id=ctx.job_id,
            round=round,
            kind=kind,
            path=str(path.resolve()),
            meta={"base_model": paths(ctx.cfg)["model"], "sha256": checkpoints.file_hashes(path)},
        )
    )


STAGES = {
    "prepare": stage_prepare,
    auto_judge.STAGE: auto_judge.stage_judge_check,
    "seed": stage_seed,
    "generate": stage_generate,
    "judge": stage_judge,
    "train": stage_train,
    "evaluate": stage_evaluate,
    "finalize": stage_finalize,
}


def run_stage(ctx: StageContext) -> None:
    STAGES[ctx.stage](ctx)
