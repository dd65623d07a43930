"""Zero-shot evaluation of Bob on the holdout tasks (docs/method.md section 6): the protocol
(:mod:`~selfplay.evaluation.protocol`), Bob as a player (:mod:`~selfplay.evaluation.policy`), the
workspace the tasks run in (:mod:`~selfplay.evaluation.workspace`), the report
(:mod:`~selfplay.evaluation.report`) and one evaluation end to end (:mod:`~selfplay.evaluation.run`).
The command line is :mod:`selfplay.evaluate`."""

from selfplay.evaluation.policy import BobPolicy, load_bob
from selfplay.evaluation.protocol import MAX_GOALS, TaskResult, evaluate_task, resolve_tasks, wilson_interval
from selfplay.evaluation.report import write_report
from selfplay.evaluation.workspace import describe_workspace, layout_error, run_workspace, workspace_misfits

__all__ = ["MAX_GOALS", "BobPolicy", "TaskResult", "describe_workspace", "evaluate_task", "layout_error", "load_bob",
           "resolve_tasks", "run_workspace", "wilson_interval", "workspace_misfits", "write_report"]
