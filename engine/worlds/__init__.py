"""Worlds a run can be tested in without outside data: the embedded demo world (a toy model it trains itself
and a gold reward; demo_world, demo_task, toy_model) and the text world (SmolLM2-135M-Instruct fetched from PyPI,
smollm2; project-written tasks with IFEval's verifiable instructions as gold, ifeval_tasks; the build and splits,
text_world; IFEval's metrics on held-out prompts, text_eval)."""
