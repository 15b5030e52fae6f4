"""Screenshots of every tab of the studio at 1280×800, after a real run, for the README.

    python benchmarks/screenshots.py [--world DIR | --mini] [--out benchmarks/results/screenshots]

Builds (or reuses) the full demo world (`python launch.py demo`'s: cached, about 3 CPU-minutes the first time;
`--world DIR` names another folder, `--mini` builds the tests' mini world, whose barely trained model answers in
random characters), starts `launch.py studio` with its worker on a fresh database, runs the demo project through
the studio's API (2 small rounds), labels a few pairs as a person would, then opens each tab in Debian's chromium
(Playwright) and saves one full-page PNG per tab. Takes 2-4 minutes once the world is built."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from tests.browser import chromium
from tests.test_studio_api import start_studio, stop_studio

ROOT = Path(__file__).resolve().parents[1]

TABS = ["Project", "Run", "Review", "Insight", "Export"]
VIEWPORT = {"width": 1280, "height": 800}


def demo_on(world, mini: bool) -> str:
    """configs/demo.yaml, two small rounds. On the demo world its `demo:` paths stay (the studio's SPA_DEMO_DIR
    names the world), so the run and the Insight tab have the world's gold; the mini world is named by its files
    (a `demo:` path would rebuild the full world there) and gets a hotter, shorter seed round."""
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg.update(rounds=2, prompts_per_round=[24, 24])
    cfg["eval"] = {**cfg.get("eval", {}), "max_prompts": 64}
    if mini:
        cfg.update(
            model=str(world.model_dir),
            seed_data=str(world.seed_file),
            prompt_pool=str(world.root / "pool.jsonl"),
            eval_data=str(world.root / "eval.jsonl"),
            epochs=2,
            learning_rate=3e-4,
        )
    return yaml.safe_dump(cfg, sort_keys=False)


def run_demo(client, config_yaml: str, timeout_s: float = 900) -> int:
    job_id = client.predict("demo", config_yaml, api_name="/queue_run")["job_id"]
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        s = client.predict(job_id, api_name="/job_status")
        line = (
            f"run #{job_id}: {s['status']} · round {s['round']} {s['stage']} "
            f"{s['progress_done']}/{s['progress_total']}"
        )
        if line != last:
            print(line, flush=True)
            last = line
        if s["status"] in ("done", "failed", "stopped"):
            if s["status"] != "done":
                raise SystemExit(f"the run ended {s['status']}: {s['error']}")
            return job_id
        time.sleep(2)
    raise SystemExit("the run did not finish in time")


def label_some(client, mini: bool) -> None:
    """A few labels as a person gives them, then the top quarter accepted. On the demo world the person reads the
    answers (its gold reward stands in): the better answer of two pairs, the right answer written for a third. The
    mini world's answers are random characters, so there the labels are arbitrary: a flip, a written answer, an A."""
    page = client.predict("demo", api_name="/review_page")
    ids = page["pair_ids"]
    if mini:
        client.predict(ids[0], "flip", api_name="/set_label")
        client.predict(ids[1], "keep", "A better answer, written by a person.", api_name="/set_label")
        client.predict(ids[2], "a", api_name="/set_label")
    else:
        from engine.worlds.demo_task import gold_score_messages, parse_prompt

        for pair_id in (ids[0], ids[2]):
            pair = client.predict(pair_id, api_name="/get_pair")
            gold_a, gold_b = (gold_score_messages(pair["prompt"], pair[key]) for key in ("response_a", "response_b"))
            client.predict(
                pair_id, "a" if gold_a > gold_b else "b" if gold_b > gold_a else "tie", api_name="/set_label"
            )
        pair = client.predict(ids[1], api_name="/get_pair")
        client.predict(ids[1], "keep", parse_prompt(pair["prompt"][-1]["content"]).answer, api_name="/set_label")
    client.predict("demo", None, None, "top 25%", api_name="/bulk_accept")


def shoot(url: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(url)
        page.wait_for_selector("#cfg-model input, #cfg-model textarea", timeout=60_000)
        time.sleep(2)
        for tab in TABS:
            page.get_by_role("tab", name=tab).click()
            time.sleep(4)  # the tab's data and charts load on selection
            path = out / f"{tab.lower()}.png"
            page.screenshot(path=str(path), full_page=True)
            saved.append(path)
            print(f"saved {path}", flush=True)
    return saved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "screenshots"))
    ap.add_argument("--world", default=None, help="demo world folder (default: launch.py demo's cache)")
    ap.add_argument("--mini", action="store_true", help="a throwaway mini world instead (seconds to build)")
    args = ap.parse_args(argv)
    from gradio_client import Client

    from engine.worlds.demo_world import WorldSize, build_demo_world

    tmp = Path(tempfile.mkdtemp(prefix="spa-screens-"))
    print("building (or reusing) the demo world …", flush=True)
    if args.mini:
        world = build_demo_world(tmp / "world", size=WorldSize.mini(), progress=lambda *a: None)
    else:
        world = build_demo_world(Path(args.world) if args.world else None, progress=lambda *a: None)
    studio = start_studio(tmp / "studio.db", env={"SPA_DEMO_DIR": str(world.root)})  # what `demo:` names
    try:
        client = Client(studio.url, verbose=False)
        run_demo(client, demo_on(world, args.mini))
        label_some(client, args.mini)
        shoot(studio.url, Path(args.out))
    finally:
        stop_studio(studio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
