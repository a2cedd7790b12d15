"""Links between devices: a latency and a bandwidth, shipped as YAML profiles or measured (`probe.py`).

The cost of handing `n` bytes over a link is the classic alpha-beta model,
latency + n / bandwidth; a ring all-reduce over N devices moves 2(N-1)/N of the
bytes through each link (Patarasuk & Yuan 2009), so it costs
latency + 2(N-1)/N x n / bandwidth per bucket.  A profile may also give the
all-reduce its own measured latency and bus bandwidth (`--probe` does): a
collective's reduction arithmetic and protocol are not a plain send, and gloo on
CPU reaches well under half its send/recv bandwidth.  Shipped profiles live in
`bench/predict/links/<name>.yaml` (sources in docs/PREDICT.md); a user's file
has the same keys: name, latency_s, bandwidth_bytes_s, source, and optionally
all_reduce_latency_s and all_reduce_bus_bytes_s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import yaml

__all__ = ["Link", "LinkError", "DEFAULT_LINK", "shipped_links", "load_link", "write_link"]

PROFILES = Path(__file__).with_name("links")
DEFAULT_LINK = "cpu-shared-memory"


class LinkError(ValueError):
    """A link name that is not shipped, or a file that is not a link profile."""


@dataclass(frozen=True)
class Link:
    name: str
    latency_s: float
    bandwidth_bytes_s: float
    source: str = ""
    all_reduce_latency_s: Optional[float] = None  # None: the hand-over's
    all_reduce_bus_bytes_s: Optional[float] = None  # bus bandwidth (nccl-tests' busbw); None: the hand-over's

    def all_reduce_note(self) -> str:
        """"; all-reduce <latency> µs, <bus bandwidth> GB/s bus" where the profile has its own numbers, else ""."""
        if self.all_reduce_latency_s is None or not self.all_reduce_bus_bytes_s:
            return ""
        return f"; all-reduce {self.all_reduce_latency_s * 1e6:.1f} µs, {self.all_reduce_bus_bytes_s / 1e9:.2f} GB/s bus"

    def transfer_s(self, nbytes: float) -> float:
        """One hand-over of `nbytes` from a device to the next."""
        return self.latency_s + nbytes / self.bandwidth_bytes_s

    def all_reduce_s(self, nbytes: float, devices: int) -> float:
        """A ring all-reduce of `nbytes` over `devices` (0 on one device)."""
        if devices < 2:
            return 0.0
        latency = self.latency_s if self.all_reduce_latency_s is None else self.all_reduce_latency_s
        bandwidth = self.all_reduce_bus_bytes_s or self.bandwidth_bytes_s
        return latency + 2 * (devices - 1) / devices * nbytes / bandwidth


def shipped_links() -> list[str]:
    """Names of the shipped profiles."""
    return sorted(p.stem for p in PROFILES.glob("*.yaml"))


def _from_mapping(data: object, where: str) -> Link:
    if not isinstance(data, dict):
        raise LinkError(f"{where}: a link profile is a mapping with latency_s and bandwidth_bytes_s")
    try:
        optional = {key: float(data[key]) for key in ("all_reduce_latency_s", "all_reduce_bus_bytes_s")
                    if data.get(key) is not None}
        link = Link(str(data.get("name", Path(where).stem)), float(data["latency_s"]),
                    float(data["bandwidth_bytes_s"]), str(data.get("source", "")), **optional)
    except (KeyError, TypeError, ValueError) as exc:
        raise LinkError(f"{where}: needs numbers latency_s and bandwidth_bytes_s ({exc})") from None
    if link.latency_s < 0 or link.bandwidth_bytes_s <= 0 or (link.all_reduce_latency_s or 0) < 0 \
            or (link.all_reduce_bus_bytes_s is not None and link.all_reduce_bus_bytes_s <= 0):
        raise LinkError(f"{where}: latencies must be >= 0 and bandwidths > 0")
    return link


def load_link(name_or_file: str) -> Link:
    """A shipped profile by name, or a YAML file (what `--link` takes)."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise LinkError(f"link file {name_or_file} does not exist")
        return _from_mapping(yaml.safe_load(path.read_text()), str(path))
    shipped = PROFILES / f"{name_or_file}.yaml"
    if not shipped.is_file():
        raise LinkError(f"unknown link {name_or_file!r}: choose one of {', '.join(shipped_links())} or a .yaml file")
    return _from_mapping(yaml.safe_load(shipped.read_text()), str(shipped))


def write_link(link: Link, path: Path) -> Path:
    """Write `link` as a profile `load_link` reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {key: value for key, value in asdict(link).items() if value is not None}
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path
