"""Early-exit policies: which exit answers each sample, from the per-exit predictions.

None of the reference implementations has a policy (they report every exit's
accuracy).  Policies here: a fixed exit k; the first exit whose top softmax
probability reaches a confidence threshold; the first exit whose predictive
entropy falls to a threshold.  A sample that never qualifies uses the last exit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ExitsMixin", "ExitPolicy", "choose_exits", "parse_policy", "DEFAULT_POLICIES"]

DEFAULT_POLICIES = ("confidence:0.9", "confidence:0.99", "entropy:0.5", "entropy:0.1")


class ExitsMixin:
    """Methods with a classifier after every stage; `bench.cell.evaluation` scores each exit."""

    def exit_classifiers(self) -> list[nn.Module]:
        """Exit j's classifier, applied to the reduced output of stage `exit_stages()[j]` (the last is the head)."""
        raise NotImplementedError

    def exit_stages(self) -> list[int]:
        """The stage each exit reads, in exit order (non-decreasing): one exit per stage unless a method says
        otherwise (DASCPL's last stage has its predictor and the head)."""
        return list(range(len(self.exit_classifiers())))


@dataclass(frozen=True)
class ExitPolicy:
    kind: str  # "fixed" | "confidence" | "entropy"
    value: float

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.value:g}"


def parse_policy(text: str) -> ExitPolicy:
    """"fixed:2", "confidence:0.9" or "entropy:0.5"."""
    kind, _, value = text.partition(":")
    if kind not in ("fixed", "confidence", "entropy") or not value:
        raise ValueError(f"exit policy {text!r}: write fixed:K, confidence:P or entropy:H")
    return ExitPolicy(kind, float(value))


def choose_exits(logits_per_exit: list[torch.Tensor], policy: ExitPolicy) -> torch.Tensor:
    """Index of the exit (0-based) that answers each sample."""
    n_exits = len(logits_per_exit)
    batch = logits_per_exit[0].shape[0]
    if policy.kind == "fixed":
        k = int(policy.value)
        if not 0 <= k < n_exits:
            raise ValueError(f"fixed exit {k} out of range 0..{n_exits - 1}")
        return torch.full((batch,), k, dtype=torch.long)
    probs = torch.stack([logits.float().softmax(dim=1).cpu() for logits in logits_per_exit])  # (exits, batch, C)
    if policy.kind == "confidence":
        ok = probs.max(dim=2).values >= policy.value
    else:
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=2)
        ok = entropy <= policy.value
    ok[-1] = True  # the last exit always answers
    return ok.to(torch.int8).argmax(dim=0)  # first qualifying exit
