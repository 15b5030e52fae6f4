"""What the studio can do, as plain functions of the database path: the UI's only door to storage (no tab opens a
`Store`) and the named API endpoints (app/api.py). They read storage and write intentions only (projects,
configs, imported rows, labels, queued jobs, stop requests); nothing here trains or loads a model.

One module per concern: projects, imports, configs, job_queue, review, insight; lookups (the refusal, one Store per
call, finding rows) and paths (where the studio may read and write). This package only hands their names on."""
from app.actions.configs import (config_file, default_config, latest_config, run_command, save_config,
                                 saved_configs, train_command, validate_config, validate_config_or_none, with_project)
from app.actions.imports import ImportReport, examples_page, import_file, preview_import
from app.actions.insight import ProjectInsight, init_answers, project_insight, round_samples, run_folder
from app.actions.job_queue import (ACTIVE, RESUMABLE, STALE_AFTER_S, approve_review, check_data, evaluation_table,
                                   job_config, job_status, jobs, other_plan, queue_export, queue_run, resume_run,
                                   run_metrics, stage_plan, stop_run)
from app.actions.lookups import ActionError, job_of, opened, pair_of, project_of
from app.actions.paths import ROOT, data_roots, export_root, readable_path
from app.actions.projects import (DEMO_CONFIG, PROJECT_NAME, TEXT_DEMO, TEXT_DEMO_CONFIG, TEXT_DEMO_TITLE,
                                  TextDemoState, create_project, ensure_demo_project, guidelines, open_text_demo,
                                  project_names, project_summary, save_guidelines, setup_job, text_demo_state)
from app.actions.review import (EDGES, PAGE_SIZES, RANK_BANDS, REVIEW_ACTIONS, REVIEW_COLUMNS, LabelChange,
                                ReviewCursor, ReviewPage, ReviewQuery, ReviewView, bulk_accept, instruction_checks,
                                label_in_review, next_offset, open_review, pair_detail, pair_rounds, rank_percent,
                                resolve_label, review_page, review_progress, review_row, review_rows, set_label,
                                show_review, step_review, undo_last_label, written_label)
from engine.config import config_fields
from engine.data.export import ExportError, ExportRequest, export, exportable
from engine.data.report import round_rows, round_table
from engine.runtime.jobs import JOB_KINDS, run_dir

__all__ = [
    "ACTIVE", "DEMO_CONFIG", "EDGES", "JOB_KINDS", "PAGE_SIZES", "PROJECT_NAME", "RANK_BANDS", "RESUMABLE",
    "REVIEW_ACTIONS", "REVIEW_COLUMNS", "ROOT", "STALE_AFTER_S", "TEXT_DEMO", "TEXT_DEMO_CONFIG", "TEXT_DEMO_TITLE",
    "ActionError", "ExportError", "ExportRequest", "ImportReport", "LabelChange", "ProjectInsight", "ReviewCursor",
    "ReviewPage", "ReviewQuery", "ReviewView", "TextDemoState",
    "approve_review", "bulk_accept", "check_data", "config_fields", "config_file", "create_project", "data_roots",
    "default_config", "ensure_demo_project", "evaluation_table", "examples_page", "export", "export_root",
    "exportable", "guidelines", "import_file", "init_answers", "instruction_checks", "job_config", "job_of",
    "job_status", "jobs", "label_in_review", "latest_config", "next_offset", "open_review", "open_text_demo",
    "opened", "other_plan", "pair_detail", "pair_of", "pair_rounds", "preview_import", "project_insight",
    "project_names", "project_of", "project_summary", "queue_export", "queue_run", "rank_percent", "readable_path",
    "resolve_label", "resume_run", "review_page", "review_progress", "review_row", "review_rows", "round_rows",
    "round_samples", "round_table", "run_command", "run_dir", "run_folder", "run_metrics", "save_config",
    "save_guidelines", "saved_configs", "set_label", "setup_job", "show_review", "stage_plan", "step_review",
    "stop_run", "text_demo_state", "train_command", "undo_last_label", "validate_config", "validate_config_or_none",
    "with_project", "written_label",
]
