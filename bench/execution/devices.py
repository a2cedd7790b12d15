"""What a "device" is: a CUDA device when one exists, else a CPU worker with its own cores.

On a CPU-only machine, "N devices" means N worker threads, each with
`threads_per_device` intra-op threads.  ATen releases the GIL inside ops, so the
workers really run at the same time (measured: docs/DEVICES.md).
A timed configuration that asks for more threads than cores is *oversubscribed*
and is flagged in its result row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .threads import available_cores, cores_per_device

__all__ = ["DeviceSet", "resolve_devices", "synchronize", "synchronize_compute", "available_cores", "DEVICE_KINDS"]

DEVICE_KINDS = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceSet:
    """The devices one cell runs on."""

    kind: str  # "cpu" | "cuda"
    devices: tuple[torch.device, ...]
    names: tuple[str, ...]
    threads_per_device: int
    cores: int

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def total_threads(self) -> int:
        return self.threads_per_device * (self.count if self.kind == "cpu" else 1)

    @property
    def oversubscribed(self) -> bool:
        return self.total_threads > self.cores


def resolve_devices(count: int, kind: str = "auto", threads_per_device: Optional[int] = None) -> DeviceSet:
    """Pick `count` devices of `kind` ("auto": CUDA when present, else CPU workers)."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"unknown device kind {kind!r}; choose one of {DEVICE_KINDS}")
    cores = available_cores()
    use_cuda = kind == "cuda" or (kind == "auto" and torch.cuda.is_available())
    if use_cuda:
        available = torch.cuda.device_count()
        if count > available:
            raise ValueError(
                f"{count} CUDA devices requested but {available} present; "
                "use fewer devices or device_kind: cpu"
            )
        devices = tuple(torch.device("cuda", i) for i in range(count))
        names = tuple(torch.cuda.get_device_name(d) for d in devices)
        return DeviceSet("cuda", devices, names, threads_per_device or max(1, cores), cores)
    threads = threads_per_device or cores_per_device(count)
    devices = tuple(torch.device("cpu") for _ in range(count))
    names = tuple(f"cpu-worker{i}" for i in range(count))
    return DeviceSet("cpu", devices, names, threads, cores)


def synchronize(devices: DeviceSet | tuple[torch.device, ...] | list[torch.device]) -> None:
    """Wait for every queued kernel on the devices before a clock is read."""
    devs = devices.devices if isinstance(devices, DeviceSet) else devices
    for device in {d for d in devs if d.type == "cuda"}:
        torch.cuda.synchronize(device)


def synchronize_compute(device: torch.device) -> None:
    """Wait for the work queued on `device`'s current stream only (its compute), before a clock is read.

    Why not `synchronize`: torch.cuda.synchronize waits for every stream of the device,
    NCCL's included, and a rank of the process executor has already posted the receive
    of its next message there (bench/execution/p2p.py `P2PReceiver`): a device-wide sync
    would wait for the upstream rank's next send and count that idle time as the batch's.
    """
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
