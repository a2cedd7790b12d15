"""The process executor's transport: micro-batches between ranks by point-to-point `isend`/`irecv`.

A message is a fixed-size int64 header (layout, dtypes, shapes), then the
payload's tensors, then the labels, so the receiver can allocate before the
data arrives; a header with layout `END` and no tensors says the input has
ended, so a receiver needs no count of what is coming.  The sender keeps at
most `depth` messages not yet taken by the next rank (the process twin of the
thread executor's bounded queue); the receiver posts the next header's receive
before it waits for this message's data.  Both plug into
`stage_loop.run_stage_group` as its `Outbound` and `Inbound`.
"""
from __future__ import annotations

from collections import deque
from typing import Optional, cast

import torch
import torch.distributed as dist

from models.staged import Payload

from .devices import synchronize_compute

__all__ = ["HEADER_LEN", "END", "P2PSender", "P2PReceiver", "encode_header", "decode_header", "flatten", "unflatten"]

HEADER_LEN = 64  # int64 entries describing one message: layout, dtypes, shapes
END = -2  # the layout of the message that ends the input
_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool)

Spec = Optional[tuple[torch.dtype, list[int]]]


def flatten(x: Payload, y: torch.Tensor) -> tuple[int, list[Optional[torch.Tensor]]]:
    """(layout, tensors): layout -1 = a bare tensor, n = a tuple of n entries (None allowed)."""
    if isinstance(x, torch.Tensor):
        return -1, [x, y]
    for entry in x:
        if entry is not None and not isinstance(entry, torch.Tensor):
            raise TypeError(f"payload entries must be tensors or None, got {type(entry).__name__}")
    return len(x), list(x) + [y]


def unflatten(layout: int, tensors: list[Optional[torch.Tensor]]) -> tuple[Payload, torch.Tensor]:
    *payload, y = tensors
    assert y is not None, "the labels are always sent"
    return (cast(torch.Tensor, payload[0]) if layout == -1 else tuple(payload)), y


def encode_header(layout: int, tensors: list[Optional[torch.Tensor]], device: torch.device) -> torch.Tensor:
    values = [layout, len(tensors)]
    for t in tensors:
        values += [-1] if t is None else [_DTYPES.index(t.dtype), t.dim(), *t.shape]
    if len(values) > HEADER_LEN:
        raise ValueError(f"a payload needs {len(values)} header entries; HEADER_LEN is {HEADER_LEN}")
    return torch.tensor(values + [0] * (HEADER_LEN - len(values)), dtype=torch.int64, device=device)


def decode_header(header: torch.Tensor) -> tuple[int, list[Spec]]:
    values = header.tolist()  # on CUDA this waits for the received header
    layout, count, pos = values[0], values[1], 2
    specs: list[Spec] = []
    for _ in range(count):
        code = values[pos]
        if code == -1:
            specs.append(None)
            pos += 1
            continue
        ndim = values[pos + 1]
        specs.append((_DTYPES[code], values[pos + 2:pos + 2 + ndim]))
        pos += 2 + ndim
    return layout, specs


class P2PSender:
    """Asynchronous sends to rank `peer`, at most `depth` messages not yet taken by it (an `Outbound`)."""

    def __init__(self, peer: int, depth: int, device: torch.device) -> None:
        self.peer, self.depth, self.device = peer, depth, device
        self.pending: deque = deque()  # (works, tensors kept alive until sent, header)

    def put(self, x: Payload, y: torch.Tensor) -> None:
        layout, tensors = flatten(x, y)
        # On this rank's device: NCCL sends CUDA tensors only, and labels read from a batch are on the CPU
        # (the ranked evaluation's rank 0 moves only the inputs); a no-op for what is already there.
        self._send(layout, [t.to(self.device).contiguous() if t is not None else None for t in tensors])

    def close(self) -> None:
        self._send(END, [])
        while self.pending:
            self._wait_oldest()

    def _send(self, layout: int, tensors: list[Optional[torch.Tensor]]) -> None:
        while len(self.pending) >= self.depth:
            self._wait_oldest()
        header = encode_header(layout, tensors, self.device)
        works = [dist.isend(header, self.peer)]
        works += [dist.isend(t, self.peer) for t in tensors if t is not None]
        self.pending.append((works, tensors, header))

    def _wait_oldest(self) -> None:
        works, _, _ = self.pending.popleft()
        for w in works:
            w.wait()
        # NCCL's wait() only makes the current stream wait for the send, not this thread: the host
        # waits here, so at most `depth` messages are in flight whatever else blocks (the stage's
        # own work is done by now: its loss was read before the hand-over)
        synchronize_compute(self.device)


class P2PReceiver:
    """Receives from rank `peer` until its END (an `Inbound`); the arrival is the decoded header.

    Construct it after the ranks' start barrier: under NCCL the first receive
    from a peer creates that pair's communicator, which blocks until the peer's
    first send, and the peer would still be in the barrier.
    """

    def __init__(self, peer: int, device: torch.device) -> None:
        self.peer, self.device = peer, device
        self.header: torch.Tensor  # allocated by each _post_header
        self.header_work: Optional[dist.Work] = None
        self._post_header()

    def _post_header(self) -> None:
        self.header = torch.empty(HEADER_LEN, dtype=torch.int64, device=self.device)
        self.header_work = dist.irecv(self.header, self.peer)

    def wait(self) -> Optional[tuple[int, list[Spec]]]:
        """Idle time: waits until the previous rank has sent (not labelled as work); None at its END."""
        assert self.header_work is not None, "no header receive posted"
        self.header_work.wait()
        self.header_work = None
        layout, specs = decode_header(self.header)
        return None if layout == END else (layout, specs)

    def take(self, arrival: object) -> tuple[Payload, torch.Tensor]:
        layout, specs = cast(tuple[int, list[Spec]], arrival)
        tensors = [None if spec is None else torch.empty(spec[1], dtype=spec[0], device=self.device)
                   for spec in specs]
        works = [dist.irecv(t, self.peer) for t in tensors if t is not None]
        self._post_header()  # never past the END: this message had data, so another message follows
        for w in works:
            if w is not None:  # irecv returns None only outside a process group
                w.wait()
        return unflatten(layout, tensors)
