"""The run's wandb run: offline by default, online only when it can work (else offline, said in
one line), resumed with the run (its id is kept in the checkpoint counters)."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

from selfplay.config import Config


def start_wandb(cfg: Config, run_dir: Path, run_id: str | None):
    """A wandb run for ``run_dir`` (``logger.wandb.*``), continuing ``run_id`` if given."""
    os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    os.environ.setdefault("WANDB_SILENT", "true")  # no banner lines between progress lines
    import wandb

    w = cfg.logger.wandb
    mode = w.mode
    if mode == "online":
        problem = wandb_online_problem()
        if problem:
            print(f"logger.wandb.mode=online: {problem}; logging offline instead "
                  f"(upload later: wandb sync {run_dir}/wandb/offline-run-*)", file=sys.stderr, flush=True)
            mode = "offline"
    kwargs = dict(project=w.project, entity=w.entity, name=Path(run_dir).name, tags=list(w.tags), dir=str(run_dir),
                  id=run_id or None, resume="allow", config=asdict(cfg))
    try:
        return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=30), **kwargs)
    except Exception as error:  # noqa: BLE001 - wandb raises many kinds; tracking must not end the run
        if mode == "offline":
            raise
        print(f"logger.wandb.mode=online: wandb could not start ({str(error).splitlines()[0] if str(error) else type(error).__name__}); "
              "logging offline instead", file=sys.stderr, flush=True)
        return wandb.init(mode="offline", **kwargs)


def wandb_online_problem(timeout_s: float = 5.0) -> str | None:
    """What stops wandb from logging online (no API key, the server unreachable), or None.
    Checked in seconds, before wandb itself would wait minutes."""
    import netrc
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
    key = os.environ.get("WANDB_API_KEY")
    if not key:
        try:
            key = (netrc.netrc(os.environ.get("NETRC")).authenticators(host) or (None, None, None))[2]
        except (OSError, netrc.NetrcParseError):
            key = None
    if not key:
        return f"no wandb API key (set WANDB_API_KEY or run `wandb login`; none in ~/.netrc for {host})"
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as error:
        return f"cannot reach the wandb server {host}:{port} ({error.strerror or error})"
    return None
