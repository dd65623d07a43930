"""One PyBullet client per environment: physics settings, bodies by name, stepping, rendering."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pybullet
import pybullet_data


@contextlib.contextmanager
def c_stdout_silenced() -> Iterator[None]:
    """Discard what C code prints to the process's standard output meanwhile (PyBullet reports
    every link it merges with ``printf``); a no-op where the C library cannot be reached."""
    try:
        libc = ctypes.CDLL(None)
        sys.stdout.flush()
        saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    except (OSError, AttributeError, TypeError, ValueError):  # no C library to reach (Windows), or no fd 1
        yield
        return
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)  # what C buffered goes to /dev/null, not to the restored stdout
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class PhysicsConfig:
    """How the world is integrated. One env step lasts ``physics_dt * substeps`` seconds."""

    # 200 Hz: a fifth cheaper than 250 Hz x 10, and trained Bobs play as well (benchmarks/RESULTS.md,
    # "Eighth session"); a block the tool keeps pressing down sinks further into the table (below).
    physics_dt: float = 0.005  # seconds per physics step (200 Hz)
    substeps: int = 8  # physics steps per env step: 8 x 5 ms = 40 ms, as in docs/method.md
    solver_iterations: int = 30  # constraint-solver iterations per physics step
    # Share of a joint/constraint error removed per physics step (PyBullet's default 0.2; the
    # per-constraint erp is ignored for multibodies). The tool pin moves a share of the step's
    # displacement before every physics step (Panda.move_pin); at 0.8 the tool follows it within
    # about one physics step (lag-1 correlation 0.06 against 0.20 at 0.4, benchmarks/control_fidelity.py).
    # (With a pin that jumped to the new target at once, 0.8 made pushed blocks fly at up to 5 m/s.)
    constraint_erp: float = 0.8
    # Share of a contact's penetration removed per physics step (None: PyBullet's default, which
    # is weaker than an explicit 0.2). At 200 Hz the default let a resting YCB object slide and
    # tip out of its goal (tests/test_tasks.py) and a block the tool presses on for 1.6 s sink
    # 10-20 mm; 0.25 holds every task's goals. More (0.4: 3-4 mm) changes how pushed blocks
    # respond enough that Bobs trained with the old default lose a third of their Push1
    # (benchmarks/RESULTS.md, "Eighth session").
    contact_erp: float | None = 0.25
    gravity: float = -9.81  # m/s^2 along z

    @property
    def control_dt(self) -> float:
        """Simulated seconds per env step."""
        return self.physics_dt * self.substeps


class Simulation:
    """A PyBullet world whose bodies are created and looked up by name (``bodies``: name -> PyBullet
    body id). The ids do leave it: :class:`TabletopEnv` and the robot keep them and call PyBullet
    with ``client`` directly on the hot path (state reads and restores every step), where a
    by-name lookup per call would cost throughput (benchmarks/env_throughput.py).

    ``render_mode=None`` or ``"rgb_array"`` connects headless (DIRECT, TinyRenderer images);
    ``"human"`` opens the GUI.
    """

    def __init__(self, physics: PhysicsConfig = PhysicsConfig(), render_mode: str | None = None) -> None:
        if render_mode not in (None, "human", "rgb_array"):
            raise ValueError(f"render_mode must be None, 'human' or 'rgb_array', got {render_mode!r}")
        self.physics = physics
        self.render_mode = render_mode
        self.client = pybullet.connect(pybullet.GUI if render_mode == "human" else pybullet.DIRECT)
        if self.client < 0:
            raise RuntimeError("could not connect to PyBullet (is another GUI window already open?)")
        pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        pybullet.setGravity(0.0, 0.0, physics.gravity, physicsClientId=self.client)
        pybullet.setPhysicsEngineParameter(
            fixedTimeStep=physics.physics_dt,
            numSolverIterations=physics.solver_iterations,
            erp=physics.constraint_erp,
            **({} if physics.contact_erp is None else {"contactERP": physics.contact_erp}),
            deterministicOverlappingPairs=1,  # same contact order after a state restore
            physicsClientId=self.client,
        )
        if render_mode == "human":
            pybullet.configureDebugVisualizer(pybullet.COV_ENABLE_GUI, 0, physicsClientId=self.client)
        self.bodies: dict[str, int] = {}

    # -- building ---------------------------------------------------------------------------
    def load_urdf(self, name: str, path: str, position=(0, 0, 0), fixed: bool = False, scale: float = 1.0,
                  merge_fixed_links: bool = False) -> int:
        """Load a URDF (relative paths resolve inside ``pybullet_data``) under ``name``.
        ``merge_fixed_links``: links joined by fixed joints become one rigid link (the same
        rigid body, fewer links for the multibody dynamics; link indices change)."""
        flags = pybullet.URDF_ENABLE_CACHED_GRAPHICS_SHAPES | (pybullet.URDF_MERGE_FIXED_LINKS if merge_fixed_links else 0)
        with c_stdout_silenced() if merge_fixed_links else contextlib.nullcontext():
            body = pybullet.loadURDF(
                path,
                basePosition=position,
                useFixedBase=fixed,
                globalScaling=scale,
                flags=flags,
                physicsClientId=self.client,
            )
        self.bodies[name] = body
        return body

    def create_box(
        self,
        name: str,
        half_extents,
        mass: float,
        rgba=(0.6, 0.6, 0.6, 1.0),
        position=(0, 0, 0),
        extra_visuals: list[tuple[tuple, tuple, tuple]] = (),
    ) -> int:
        """A box body; ``extra_visuals`` adds (half_extents, offset, rgba) visual-only patches."""
        c = self.client
        collision = pybullet.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half_extents, physicsClientId=c)
        if extra_visuals:
            shapes = [(half_extents, (0, 0, 0), rgba), *extra_visuals]
            visual = pybullet.createVisualShapeArray(
                shapeTypes=[pybullet.GEOM_BOX] * len(shapes),
                halfExtents=[s[0] for s in shapes],
                visualFramePositions=[s[1] for s in shapes],
                rgbaColors=[s[2] for s in shapes],
                physicsClientId=c,
            )
        else:
            visual = pybullet.createVisualShape(pybullet.GEOM_BOX, halfExtents=half_extents, rgbaColor=rgba, physicsClientId=c)
        body = pybullet.createMultiBody(mass, collision, visual, basePosition=position, physicsClientId=c)
        self.bodies[name] = body
        return body

    def create_marker(self, half_extents, rgba) -> int:
        """A visual-only box (no collision, no mass) for showing goals; not a named body."""
        visual = pybullet.createVisualShape(pybullet.GEOM_BOX, halfExtents=half_extents, rgbaColor=rgba, physicsClientId=self.client)
        return pybullet.createMultiBody(0.0, -1, visual, basePosition=(0, 0, -1), physicsClientId=self.client)

    def set_dynamics(self, name: str, link: int = -1, **kwargs) -> None:
        """Forward to ``changeDynamics`` (friction, mass, damping, ...)."""
        pybullet.changeDynamics(self.bodies[name], link, physicsClientId=self.client, **kwargs)

    # -- stepping ---------------------------------------------------------------------------
    def step(self, before_substep: Callable[[float], None] | None = None) -> None:
        """Advance one env step (``physics.substeps`` physics steps); ``before_substep(f)`` runs
        before each, with ``f`` the share of the step done once it has run (1/substeps ... 1)."""
        step, client, n = pybullet.stepSimulation, self.client, self.physics.substeps
        for k in range(n):
            if before_substep is not None:
                before_substep((k + 1) / n)
            step(physicsClientId=client)

    def forget_contacts(self, static: str = "table") -> None:
        """Drop PyBullet's cached contacts (manifolds and warm-start impulses).

        Every body but ``static`` is moved far apart, collision detection runs once (no
        dynamics), and the bodies are put back. After this, a restored state no longer depends
        on what the world did before it, which makes state restores exact.
        """
        c = self.client
        get_pose, set_pose = pybullet.getBasePositionAndOrientation, pybullet.resetBasePositionAndOrientation
        bodies = [body for name, body in self.bodies.items() if name != static]
        poses = [get_pose(body, physicsClientId=c) for body in bodies]
        for k, body in enumerate(bodies):
            set_pose(body, (100.0 + 10.0 * k, 0.0, 100.0), (0.0, 0.0, 0.0, 1.0), physicsClientId=c)
        pybullet.performCollisionDetection(physicsClientId=c)
        for body, (position, orientation) in zip(bodies, poses):
            set_pose(body, position, orientation, physicsClientId=c)

    # -- rendering --------------------------------------------------------------------------
    def render(self, width: int = 480, height: int = 360, target=(-0.25, 0.0, 0.15), distance: float = 1.45,
               yaw: float = 55.0, pitch: float = -32.0) -> np.ndarray:
        """An RGB image (height, width, 3) uint8 from an orbit camera around ``target``."""
        c = self.client
        view = pybullet.computeViewMatrixFromYawPitchRoll(target, distance, yaw, pitch, 0.0, 2, physicsClientId=c)
        proj = pybullet.computeProjectionMatrixFOV(50.0, width / height, 0.05, 5.0, physicsClientId=c)
        renderer = pybullet.ER_BULLET_HARDWARE_OPENGL if self.render_mode == "human" else pybullet.ER_TINY_RENDERER
        _, _, rgba, _, _ = pybullet.getCameraImage(width, height, view, proj, renderer=renderer, physicsClientId=c)
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[..., :3]

    def close(self) -> None:
        if self.client >= 0:
            try:
                pybullet.disconnect(physicsClientId=self.client)
            except pybullet.error:
                pass
            self.client = -1
