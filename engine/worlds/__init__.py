"""Worlds a run can be tested in without outside data: the embedded demo world (a toy model it trains itself
and a gold reward; demo_world, demo_task, toy_model)."""
