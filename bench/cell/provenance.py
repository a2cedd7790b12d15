"""What every row records about where it ran: versions, commit and host."""
from __future__ import annotations

import platform
import socket
import subprocess
import sys

import torch

from bench import REPO_ROOT

__all__ = ["provenance"]


def _git_sha() -> str | None:
    try:
        root = REPO_ROOT
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    return {
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "git_sha": _git_sha(),
        "host": f"{socket.gethostname()} ({platform.machine()})",
    }
