"""Screenshots of every tab of the studio at 1280×800, after a real run, for the README.

    python benchmarks/screenshots.py [--out benchmarks/results/screenshots]

Builds a mini demo world (about 10 s), starts `launch.py studio` with its worker on a fresh database, runs the
demo project on the mini world through the studio's API (2 rounds, small), labels a few pairs as a person would,
then opens each tab in Debian's chromium (Playwright) and saves one full-page PNG per tab. Takes 2-4 minutes."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_studio_api import start_studio, stop_studio  # noqa: E402
from tests.browser import chromium  # noqa: E402

TABS = ["Project", "Run", "Review", "Insight", "Export"]
VIEWPORT = {"width": 1280, "height": 800}


def demo_on(world) -> str:
    """configs/demo.yaml pointed at a mini world, two small rounds."""
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg.update(model=str(world.model_dir), seed_data=str(world.seed_file), prompt_pool=str(world.root / "pool.jsonl"),
               eval_data=str(world.root / "eval.jsonl"), rounds=2, prompts_per_round=[24, 24], epochs=2,
               learning_rate=3e-4)
    return yaml.safe_dump(cfg, sort_keys=False)


def run_demo(client, config_yaml: str, timeout_s: float = 900) -> int:
    job_id = client.predict("demo", config_yaml, api_name="/queue_run")["job_id"]
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        s = client.predict(job_id, api_name="/job_status")
        line = (f"run #{job_id}: {s['status']} · round {s['round']} {s['stage']} "
                f"{s['progress_done']}/{s['progress_total']}")
        if line != last:
            print(line, flush=True)
            last = line
        if s["status"] in ("done", "failed", "stopped"):
            if s["status"] != "done":
                raise SystemExit(f"the run ended {s['status']}: {s['error']}")
            return job_id
        time.sleep(2)
    raise SystemExit("the run did not finish in time")


def label_some(client) -> None:
    """A few labels as a person gives them: a correction, a written answer, the top quarter accepted."""
    page = client.predict("demo", api_name="/review_page")
    ids = page["pair_ids"]
    client.predict(ids[0], "flip", api_name="/set_label")
    client.predict(ids[1], "keep", "A better answer, written by a person.", api_name="/set_label")
    client.predict(ids[2], "a", api_name="/set_label")
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
    args = ap.parse_args(argv)
    from gradio_client import Client

    from engine.worlds.demo_world import WorldSize, build_demo_world

    tmp = Path(tempfile.mkdtemp(prefix="spa-screens-"))
    print("building a mini demo world …", flush=True)
    world = build_demo_world(tmp / "world", size=WorldSize.mini(), progress=lambda *a: None)
    studio = start_studio(tmp / "studio.db")
    try:
        client = Client(studio.url, verbose=False)
        run_demo(client, demo_on(world))
        label_some(client)
        shoot(studio.url, Path(args.out))
    finally:
        stop_studio(studio)
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
