"""Object catalogue (blocks, a block with marked faces, unseen meshes) and collision-free placement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tabletop_env.sim import Simulation

BLOCK_SIZE = 0.05  # metres, edge of a block

#: RGBA of the 8 block colours, in order.
COLOURS = {
    "red": (0.90, 0.15, 0.15, 1.0),
    "green": (0.15, 0.75, 0.25, 1.0),
    "blue": (0.15, 0.35, 0.90, 1.0),
    "yellow": (0.95, 0.85, 0.10, 1.0),
    "purple": (0.60, 0.20, 0.80, 1.0),
    "orange": (0.98, 0.55, 0.10, 1.0),
    "cyan": (0.10, 0.80, 0.85, 1.0),
    "pink": (0.95, 0.45, 0.70, 1.0),
}


@dataclass(frozen=True)
class ObjectSpec:
    """What an object is.

    ``kind``: "block", "marked_block" or one of :data:`MESHES`; ``symmetry``: how rotations are
    compared ("cube", "box", "none", "any", see :mod:`tabletop_env.state`); ``radius``: metres, a
    bound on the footprint used for placement; ``half_height``: metres from the centre of mass to
    the table when resting in its default orientation.
    """

    kind: str
    symmetry: str
    radius: float
    half_height: float
    colour: str = "red"
    urdf: str | None = None
    scale: float = 1.0
    mass: float = 0.1  # kg


#: Unseen objects that ship with pybullet_data: kind -> (urdf, scale, symmetry, radius, half-height).
MESHES = {
    "lego": ("lego/lego.urdf", 1.5, "none", 0.036, 0.018),
    "duck": ("duck_vhacd.urdf", 0.8, "none", 0.05, 0.026),
    "jenga": ("jenga/jenga.urdf", 0.5, "box", 0.04, 0.0075),
    "domino": ("domino/domino.urdf", 1.5, "box", 0.04, 0.038),
    "sphere": ("sphere_small.urdf", 0.8, "any", 0.03, 0.024),
}


def block(colour: str = "red", faces_alike: bool = True) -> ObjectSpec:
    """A 5 cm block; ``faces_alike=False`` gives the block with marked faces (for flip)."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose one of {sorted(COLOURS)}")
    half = BLOCK_SIZE / 2
    kind, symmetry = ("block", "cube") if faces_alike else ("marked_block", "none")
    return ObjectSpec(kind=kind, symmetry=symmetry, radius=half * np.sqrt(2), half_height=half, colour=colour)


def blocks(n: int, faces_alike: bool = True) -> tuple[ObjectSpec, ...]:
    """``n`` blocks of distinct colours (1 <= n <= 8)."""
    if not 1 <= n <= len(COLOURS):
        raise ValueError(f"between 1 and {len(COLOURS)} blocks are supported, got {n}")
    return tuple(block(c, faces_alike) for c in list(COLOURS)[:n])


def mesh(kind: str) -> ObjectSpec:
    """One of the unseen objects in :data:`MESHES`."""
    if kind not in MESHES:
        raise ValueError(f"unknown object kind {kind!r}; choose one of {sorted(MESHES)}")
    urdf, scale, symmetry, radius, half_height = MESHES[kind]
    return ObjectSpec(kind=kind, symmetry=symmetry, radius=radius, half_height=half_height, urdf=urdf, scale=scale)


def create(sim: Simulation, name: str, spec: ObjectSpec) -> int:
    """Add the body for ``spec`` to ``sim`` under ``name`` (parked below the table)."""
    park = (0.0, 0.0, -1.0)
    if spec.urdf is not None:
        body = sim.load_urdf(name, spec.urdf, park, scale=spec.scale)
    else:
        half = BLOCK_SIZE / 2
        patches = []
        if spec.kind == "marked_block":
            # A white square on the +z face and a black one on +x: every rotation looks different.
            patches = [
                ((0.015, 0.015, 0.001), (0, 0, half + 0.0005), (1, 1, 1, 1)),
                ((0.001, 0.015, 0.015), (half + 0.0005, 0, 0), (0.05, 0.05, 0.05, 1)),
            ]
        body = sim.create_box(name, (half, half, half), spec.mass, COLOURS[spec.colour], park, patches)
    sim.set_dynamics(name, lateralFriction=1.0, spinningFriction=0.001, rollingFriction=0.0001 if spec.kind == "sphere" else 0.0)
    return body


def sample_positions(
    rng: np.random.Generator,
    radii: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    avoid: np.ndarray | None = None,
    avoid_radius: float = 0.0,
    gap: float = 0.01,
    attempts: int = 2000,
) -> np.ndarray:
    """Non-overlapping (x, y) centres, (n, 2) metres, uniform in the box [low, high].

    ``radii`` (n,) are footprint radii; ``avoid`` (k, 2) are points every centre keeps
    ``avoid_radius`` away from. Raises ``ValueError`` when the objects cannot fit.
    """
    placed: list[np.ndarray] = []
    placed_radii: list[float] = []
    for radius in radii:
        for _ in range(attempts):
            xy = rng.uniform(low, high)
            if any(np.linalg.norm(xy - q) < radius + r + gap for q, r in zip(placed, placed_radii)):
                continue
            if avoid is not None and len(avoid) and np.min(np.linalg.norm(avoid - xy, axis=1)) < radius + avoid_radius:
                continue
            placed.append(xy)
            placed_radii.append(radius)
            break
        else:
            raise ValueError(
                f"could not place {len(radii)} objects without overlap in the area "
                f"x in [{low[0]:.2f}, {high[0]:.2f}], y in [{low[1]:.2f}, {high[1]:.2f}] m; "
                "use fewer objects or a larger placement area"
            )
    return np.asarray(placed)
