"""The machinery that runs the method: job kinds (jobs), the worker, stages (stages), stage processes,
checkpoints, distributed launch, and the context a stage runs in. Calls engine.data and engine.method, never
the reverse. Importing this package imports no torch (the worker and the studio stay light)."""

from engine.runtime.jobs import JOB_KINDS, job_plan, job_request, plan
from engine.runtime.run_folder import run_dir
from engine.runtime.worker import Worker

__all__ = ["JOB_KINDS", "Worker", "job_plan", "job_request", "plan", "run_dir"]
