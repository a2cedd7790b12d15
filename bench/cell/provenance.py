"""What every row records about where it ran: versions, commit and host.

Torch-free on purpose: the runner records the rows of cells that never finished
(timeouts, killed processes, lost jobs) without importing torch, so the torch
version is read from the installed package's `torch/version.py` (where
`torch.__version__` itself comes from) rather than from an imported torch.
"""
from __future__ import annotations

import importlib.util
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

from bench import REPO_ROOT

__all__ = ["provenance"]


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _torch_version() -> Optional[str]:
    """`torch.__version__` (local build tag included, e.g. 2.4.1+cu121), without importing torch."""
    spec = importlib.util.find_spec("torch")  # finds the package; runs none of it
    if spec is None or spec.origin is None:
        return None
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return None
    match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return match.group(1) if match else None


def provenance() -> dict:
    return {
        "torch_version": _torch_version(),
        "python_version": sys.version.split()[0],
        "git_sha": _git_sha(),
        "host": f"{socket.gethostname()} ({platform.machine()})",
    }
