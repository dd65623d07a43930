"""A video of one whole game (Alice's turns, then Bob's) with the current policies."""

from __future__ import annotations

from pathlib import Path

from selfplay.config import Config
from selfplay.vec_env import make_game


def record_game(cfg: Config, learners: tuple, seed: int, path: Path, max_steps: int = 2000) -> Path:
    """Play one game of ``cfg`` from ``seed`` with ``learners`` (Alice's, Bob's), sampling their
    actions, and write every second frame to ``path`` (mp4, 12 fps)."""
    import imageio.v2 as imageio

    game = make_game(cfg, seed=seed, render_mode="rgb_array")
    obs, _ = game.reset()
    frames = []
    for step in range(max_steps):
        action = learners[int(obs["phase"][0])].act({k: v[None] for k, v in obs.items()})[0]
        obs, _, done, _, _ = game.step(action)
        if step % 2 == 0:
            frames.append(game.render())
        if done:
            break
    game.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=12, macro_block_size=8)
    return path
