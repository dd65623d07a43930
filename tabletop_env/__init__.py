"""tabletop_env: a fast goal-conditioned PyBullet tabletop (Franka Panda, 1-8 objects).

Importing the package registers every holdout task as a gymnasium id::

    import gymnasium, tabletop_env
    env = gymnasium.make("Tabletop/Push1-v0")
"""

from tabletop_env.env import TabletopEnv
from tabletop_env.state import SceneState
from tabletop_env.tasks import list_tasks, make_task, register_all
from tabletop_env.wrappers import DiscreteActions

register_all()

__all__ = ["TabletopEnv", "SceneState", "DiscreteActions", "list_tasks", "make_task"]
