"""Registry of holdout tasks; each one is also a gymnasium id (``gymnasium.make("Tabletop/Push1-v0")``)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

from tabletop_env.tasks.base import Goal, Task
from tabletop_env.tasks.blocks import Arrangement, Flip, PickAndPlace, Push, Stack
from tabletop_env.tasks.unseen import PushUnseen

NAMESPACE = "Tabletop"

#: gymnasium id -> factory of the task.
TASKS: dict[str, Callable[[], Task]] = {}


def _add(name: str, factory: Callable[[str], Task]) -> None:
    TASKS[f"{NAMESPACE}/{name}-v0"] = lambda: factory(f"{NAMESPACE}/{name}-v0")


for _n in (1, 2, 4, 8):
    _add(f"Push{_n}", lambda name, n=_n: Push(n, name))
for _n in (1, 2):
    _add(f"PickAndPlace{_n}", lambda name, n=_n: PickAndPlace(n, name))
for _n in (2, 3):
    _add(f"Stack{_n}", lambda name, n=_n: Stack(n, name))
_add("Flip1", Flip)
_add("PushUnseen3", lambda name: PushUnseen(("lego", "duck", "jenga"), name))
_add("PushUnseen4", lambda name: PushUnseen(("lego", "duck", "domino", "sphere"), name))
_add("Row3", lambda name: Arrangement("row", name))
_add("Pyramid3", lambda name: Arrangement("pyramid", name))


def list_tasks() -> list[str]:
    """All registered holdout task ids."""
    return sorted(TASKS)


def make_task(task_id: str) -> Task:
    """The task for a gymnasium id; a clear error lists the valid ids."""
    if task_id not in TASKS:
        raise ValueError(f"unknown task {task_id!r}; valid ids: {', '.join(list_tasks())}")
    return TASKS[task_id]()


def register_all() -> None:
    """Register every task as a gymnasium id (idempotent). Their observations hold the goal-env
    keys only, consistent under HER relabelling; ``gym.make(id, structured_keys=True)`` adds the
    object-set keys a self-play Bob reads (:class:`tabletop_env.TabletopEnv`)."""
    for task_id in TASKS:
        if task_id not in gym.registry:
            gym.register(id=task_id, entry_point="tabletop_env.env:TabletopEnv", kwargs={"task": task_id, "structured_keys": False})


__all__ = ["Goal", "Task", "TASKS", "list_tasks", "make_task", "register_all"]
