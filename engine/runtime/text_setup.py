"""The text demo project's setup job (engine.runtime.jobs.TEXT_WORLD): fetch SmolLM2-135M-Instruct when the model
cache lacks it, build the text world (or find it cached), and import its seed pairs and pool prompts into the
project. The studio queues it when the person opens the demo project "Instruction following, SmolLM2-135M"; each
step is its own idempotent stage, so a stopped or killed setup resumes where it stopped.

The world's held-out prompts (eval.jsonl, eval2.jsonl) are not imported: they carry no answer pairs, which the
project's eval role holds, and a run's evaluate stage reads both held-out splits from the world itself.

Module level imports nothing heavy: the worker and the studio read the request type and the stage names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from storage import Job, Store

Progress = Callable[..., None]  # (done, total, force=False): the runtime's JobProgress

STAGES = ("model", "world", "import")
SIZES = ("full", "mini")  # mini: TextWorldSize.mini(), a handful of everything (tests); full: the default size
SIZE_ENV = "SPA_TEXT_WORLD_SIZE"


@dataclass
class TextSetupRequest:
    """What a text world setup job sets up (stored as YAML of these fields in the job's config_yaml)."""

    project: str
    size: str = "full"  # used only when no text world is cached at the folder yet (a cached one is reused)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, not {self.size!r}")


def run_text_setup(
    store: Store, job: Job, req: TextSetupRequest, stage: str, progress: Progress, say: Callable[[str], None]
) -> None:
    """One stage of a setup job: `model` fetches, `world` builds, `import` imports (STAGES). The runtime parses
    the request and makes the progress reporter, so this module imports none of it."""
    progress(0, 1, force=True)
    {"model": _fetch, "world": _build, "import": _import}[stage](store, job, req, progress, say)
    progress(1, 1, force=True)


def _fetch(store, job, req, progress, say) -> None:
    from engine.worlds.smollm2 import fetch

    model = fetch(progress=say)
    say(f"model {'fetched and converted' if model.fresh else 'found in the cache'} at {model.path}")


def _build(store, job, req, progress, say) -> None:
    """Build the world at its folder (SPA_TEXT_DIR or the user's cache), reporting the seed samples drawn so far.
    A world already cached there is reused whatever its size, so the mini size never replaces a full world."""
    import time

    from engine.worlds.text_world import TextWorld, TextWorldSize, build_text_world, default_text_dir

    root = default_text_dir()
    cached = (root / "world.json").is_file()
    size = None if cached or req.size == "full" else TextWorldSize.mini()

    def report(step: str, done: int, total: int) -> None:
        say(f"{step} {done}/{total}")
        progress(done, total, force=True)

    started = time.monotonic()
    say(f"text world at {root}" + (" (cached)" if cached else f": building the {req.size} size"))
    world = build_text_world(root, size=size, progress=report)
    counts = TextWorld.at(world.root).manifest["counts"]
    took = "found in the cache" if cached else f"built in {time.monotonic() - started:.0f}s"
    say(
        f"text world {took}: {counts['seed_pairs']} seed pairs, {counts['pool']} pool prompts, "
        f"{counts['eval']} + {counts['eval2']} held-out prompts"
    )


def _import(store, job, req, progress, say) -> None:
    from engine.data.importers import load_examples
    from engine.worlds.text_world import TextWorld, default_text_dir

    world = TextWorld.at(default_text_dir())
    files = ((world.seed_file, "seed"), (world.pool_file, "pool"))
    for k, (path, role) in enumerate(files):
        result = load_examples(str(path), role)
        added, present = store.add_examples(job.project_id, result.examples)
        say(f"{path.name}: {added} {role} rows imported, {present} already present")
        progress(k + 1, len(files), force=True)
