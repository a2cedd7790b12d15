"""Test accuracy of the deployed network, and of every early exit with its cost.

Exit cost is measured, not assumed: the time until exit k's prediction is ready
(stages 1..k plus the exit classifiers met on the way, each device synchronised)
and the parameters used to get there.  Policies (methods/exits.py) are then
scored as accuracy vs average depth and average time per sample.

A distributed cell computes the same numbers inside its ranks
(`rank_evaluation.evaluate_in_ranks`): both run the method's deployed predictor
in the same pieces (`Method.predict_stage` / `predict_head` / `predict_return`)
and score exits with the same `exit_report`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from bench.cell.model_selection import SelectionCurve
from bench.execution.devices import synchronize
from methods.base import Method
from methods.exits import DEFAULT_POLICIES, ExitsMixin, choose_exits, parse_policy
from models import count_parameters
from models.staged import Payload

__all__ = ["test_batches", "accuracy", "test_accuracy", "ExitReport", "exit_classifiers", "exit_stages", "exits_after",
           "exit_logits", "exit_parameters", "exit_report", "evaluate_exits", "EvalPoint", "evaluate_now", "Evaluation"]


def test_batches(dataset, batch_size: int, max_batches: Optional[int]) -> list:
    """The first `max_batches` test batches in order (all of them if None)."""
    from data.prepared import fetch_batch

    n = len(dataset)
    limit = n if max_batches is None else min(n, max_batches * batch_size)
    return [fetch_batch(dataset, torch.arange(s, min(s + batch_size, limit))) for s in range(0, limit, batch_size)]


@torch.no_grad()
def accuracy(method: Method, batches: Sequence) -> tuple[float, int]:
    """Top-1 accuracy of the method's deployed predictor (stages + final head)."""
    method.train(False)
    correct = total = 0
    for x, y in batches:
        correct += int((method.predict(x).argmax(dim=1).cpu() == y).sum())
        total += len(y)
    method.train(True)
    return correct / max(total, 1), total


def test_accuracy(method: Method, batches: Sequence) -> tuple[float, int]:
    """`accuracy` on the test batches, refusing an empty test split (an accuracy of nothing is no number)."""
    acc, samples = accuracy(method, batches)
    if samples == 0:
        raise ValueError("evaluation saw 0 test samples: the test split is empty")
    return acc, samples


@dataclass
class ExitReport:
    exit_acc: list[float] = field(default_factory=list)
    exit_time_s: list[float] = field(default_factory=list)  # per sample, until exit k is ready
    exit_params: list[int] = field(default_factory=list)  # stages and exit classifiers 1..k
    policy: list[str] = field(default_factory=list)
    policy_acc: list[float] = field(default_factory=list)
    policy_depth: list[float] = field(default_factory=list)  # mean exit number, 1-based
    policy_time_s: list[float] = field(default_factory=list)

    def columns(self) -> dict:
        """The row's exit columns: `exit_*` as named, the policy fields prefixed (`exit_policy_acc`, ...)."""
        return {name if name.startswith("exit_") else f"exit_{name}": value for name, value in vars(self).items()}


def exit_classifiers(method: Method) -> Optional[list[torch.nn.Module]]:
    """Every exit's classifier, in exit order (methods/exits.py); None for a method without exits."""
    return method.exit_classifiers() if hasattr(method, "exit_classifiers") else None


def exit_stages(method: Method) -> list[int]:
    """The stage each exit reads, in exit order (`ExitsMixin.exit_stages`)."""
    assert isinstance(method, ExitsMixin), f"{type(method).__name__} has no exits"
    return method.exit_stages()


def exits_after(method: Method, k: int) -> list[int]:
    """The exits that read stage k's output, in exit order."""
    return [j for j, stage in enumerate(exit_stages(method)) if stage == k]


def exit_logits(method: Method, classifiers: Sequence[torch.nn.Module], j: int, x: Payload) -> torch.Tensor:
    """Exit j's logits from the output `x` of the stage it reads (`classifiers`: `exit_classifiers(method)`)."""
    return classifiers[j](method.model.reducers[exit_stages(method)[j]](x))


def exit_parameters(method: Method, classifiers: Sequence[torch.nn.Module]) -> list[int]:
    """Parameters used until exit j's answer, for every j: the stages it reads through and exit classifiers 1..j.

    Exit j's cost counts what ran before its answer was ready: the stages up to the
    one it reads and the exit classifiers met on the way (a threshold policy
    evaluates each of them), as exit_time_s does.  Counting only classifier j made
    the cost fall with depth whenever an early classifier is wide (a 512-wide
    predictor on 32x32x32 features).
    """
    used, counts, ran = 0, [], 0
    for classifier, k in zip(classifiers, exit_stages(method)):
        for stage in method.model.stages[ran:k + 1]:
            used += count_parameters(stage)
        ran = max(ran, k + 1)
        used += count_parameters(classifier)
        counts.append(used)
    return counts


def exit_report(logits: Sequence[torch.Tensor], y: torch.Tensor, ready_s: Sequence[float], params: Sequence[int],
                policies: Sequence[str] = DEFAULT_POLICIES) -> ExitReport:
    """Score every exit and policy from each exit's logits over the whole split (CPU, in sample order).

    `ready_s[k]`: seconds, summed over the split, until exit k's answer was ready.
    Shared by the in-process (`evaluate_exits`) and the ranked evaluation
    (bench/cell/rank_evaluation.py), so both score the same logits the same way.
    """
    logits = list(logits)
    report = ExitReport()
    report.exit_acc = [float((exit_logits.argmax(1) == y).float().mean()) for exit_logits in logits]
    report.exit_time_s = [t / len(y) for t in ready_s]
    report.exit_params = list(params)
    for text in [f"fixed:{k}" for k in range(len(logits))] + list(policies):
        choice = choose_exits(logits, parse_policy(text))
        picked = torch.stack(logits)[choice, torch.arange(len(y))]
        report.policy.append(text)
        report.policy_acc.append(float((picked.argmax(1) == y).float().mean()))
        report.policy_depth.append(float((choice + 1).float().mean()))
        report.policy_time_s.append(float(torch.tensor(report.exit_time_s)[choice].mean()))
    return report


@torch.no_grad()
def evaluate_exits(method: Method, batches: Sequence, policies: Sequence[str] = DEFAULT_POLICIES) -> Optional[ExitReport]:
    """Accuracy and cost of every exit and exit policy; None for methods without exits."""
    classifiers = exit_classifiers(method)
    if classifiers is None:
        return None
    method.train(False)
    n_exits = len(classifiers)
    all_logits: list[list[torch.Tensor]] = [[] for _ in range(n_exits)]
    labels, ready = [], [0.0] * n_exits
    for x, y in batches:
        start = time.perf_counter()
        for k in range(exit_stages(method)[-1] + 1):
            x = method.predict_stage(k, x)
            for j in exits_after(method, k):
                logits = exit_logits(method, classifiers, j, x)
                synchronize([logits.device])
                ready[j] += time.perf_counter() - start
                all_logits[j].append(logits.cpu())
        labels.append(y)
    method.train(True)
    return exit_report([torch.cat(parts) for parts in all_logits], torch.cat(labels), ready, exit_parameters(method, classifiers),
                       policies)


@dataclass
class EvalPoint:
    """One evaluation of the deployed network: test (and hold-out) accuracy, and every exit's."""

    test_acc: float
    eval_samples: int
    val_acc: Optional[float]
    exits: Optional[ExitReport]


def evaluate_now(method: Method, test: Sequence, val: Optional[Sequence]) -> EvalPoint:
    """Test accuracy, hold-out accuracy (None without a hold-out), then every exit: the order both modes use."""
    acc, samples = test_accuracy(method, test)
    val_acc = accuracy(method, val)[0] if val else None
    return EvalPoint(acc, samples, val_acc, evaluate_exits(method, test))


@dataclass
class Evaluation:
    """The row's accuracy columns: the deployed network after all training, the selection curve, the exits."""

    test_acc: float
    eval_samples: int
    selection: SelectionCurve
    exits: Optional[ExitReport]

    def columns(self) -> dict:
        exits = self.exits.columns() if self.exits is not None else {}
        return {"test_acc": self.test_acc, "eval_samples": self.eval_samples, **self.selection.columns(), **exits}
