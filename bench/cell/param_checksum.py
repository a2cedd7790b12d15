"""A checksum of a method's trained state that does not depend on how its stages were spread over processes.

Why: a distributed cell run by two torchrun "nodes" must end with the same
network as the same cell run by one (issue #15), and a cell run in N processes
with the same network as in one process where the executors promise the same
numbers.  Equal losses and accuracy hint at that; a checksum of every
parameter and buffer (batch-norm running statistics too) proves it, in one
short string per row (`param_checksum`).

The checksum is built per stage, so each rank can hash what it owns:

- stage k's tensors: a decoupled method's stage step k (its encoder, i.e. the
  model's stage k, and its objective: projector, predictor, exit classifier,
  the head on the last stage); a coupled method's `model.stages[k]`.  The
  model's head counts with the last stage for every method (as torch.distributed
  GPipe cuts the network, methods/gpipe_dist.py), so every parameter and
  buffer of the method is in exactly one stage;
- `digest_k` = sha256 over stage k's tensors in name order, each as its name,
  dtype, shape and the bytes of its CPU contiguous copy;
- the cell's checksum = sha256 of digest_0 .. digest_{K-1} concatenated, in
  stage order, whichever process computed which digest.

A DDP replica holds every stage; its ranks' *parameter* digests must agree
(DDP averages the gradients, so replicas that differ are a bug and the cell
fails saying so), while buffers are per rank (each replica's batch-norm
statistics see its own shard), so rank 0's digests make the checksum.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch
from torch import nn

from methods.base import Method

__all__ = ["StageDigests", "stage_tensors", "tensors_digest", "stage_digests", "combine_digests",
           "method_checksum", "ranks_checksum", "ReplicasDisagree"]


class ReplicasDisagree(RuntimeError):
    """DDP replicas ended training with different parameters."""


def stage_tensors(method: Method, k: int, buffers: bool = True) -> dict[str, torch.Tensor]:
    """Stage k's parameters (and buffers) by name, the head and the stage's objective included."""
    model = method.model
    modules: dict[str, nn.Module] = ({"step": method.stage_steps()[k]} if method.decoupled
                                     else {"stage": model.stages[k]})
    if k == model.num_stages - 1:
        modules["head"] = model.head  # in the last step's objective already, or (AL) unused but the model's
    named: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for prefix, module in modules.items():
        tensors = list(module.named_parameters()) + (list(module.named_buffers()) if buffers else [])
        for name, tensor in tensors:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                named[f"{prefix}.{name}"] = tensor
    return named


def tensors_digest(named: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) over the tensors in name order: name, dtype, shape, then the bytes.

    The bytes are those of a CPU contiguous copy viewed as uint8, which holds
    any dtype (numpy has no bfloat16); a contiguous CPU tensor is hashed in place.
    """
    h = hashlib.sha256()
    for name in sorted(named):
        t = named[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def stage_digests(method: Method, stages: Iterable[int], buffers: bool = True) -> dict[int, str]:
    """`tensors_digest` of each stage in `stages` (the ones this process trained)."""
    return {k: tensors_digest(stage_tensors(method, k, buffers)) for k in stages}


def combine_digests(digests: Mapping[int, str], num_stages: int) -> str:
    """The checksum: sha256 of the stage digests concatenated in stage order; every stage exactly once."""
    if sorted(digests) != list(range(num_stages)):
        raise ValueError(f"a checksum needs a digest of each of {num_stages} stages, got stages {sorted(digests)}")
    return hashlib.sha256("".join(digests[k] for k in range(num_stages)).encode()).hexdigest()


def method_checksum(method: Method) -> str:
    """The checksum of a method whose every stage this process holds (a one-process cell)."""
    num_stages = method.model.num_stages
    return combine_digests(stage_digests(method, range(num_stages)), num_stages)


@dataclass
class StageDigests:
    """What one rank sends rank 0: its stages' digests, and (DDP) its parameters' alone, to compare replicas."""

    stages: dict[int, str]
    parameters: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, method: Method, stages: Iterable[int], replica: bool) -> "StageDigests":
        owned = list(stages)
        return cls(stage_digests(method, owned), stage_digests(method, owned, buffers=False) if replica else {})


def ranks_checksum(gathered: list[StageDigests], num_stages: int, replica: bool) -> str:
    """Rank 0: the checksum from every rank's digests (by rank).

    A pipeline's ranks own disjoint stage groups, combined in stage order.  DDP
    replicas all hold every stage: rank 0's digests are used, after checking
    that every replica's parameters equal rank 0's (ReplicasDisagree if not).
    """
    if replica:
        first = gathered[0].parameters
        differ = [r for r, g in enumerate(gathered) if g.parameters != first]
        if differ:
            stages = sorted({k for r in differ for k in first if gathered[r].parameters.get(k) != first[k]})
            raise ReplicasDisagree(f"DDP replicas {differ} ended training with parameters unlike rank 0's "
                                   f"(stages {stages}): their gradients were not averaged alike")
        return combine_digests(gathered[0].stages, num_stages)
    merged: dict[int, str] = {}
    for rank, g in enumerate(gathered):
        twice = merged.keys() & g.stages.keys()
        if twice:
            raise ValueError(f"rank {rank} sent digests of stages {sorted(twice)} another rank sent too")
        merged |= g.stages
    return combine_digests(merged, num_stages)
