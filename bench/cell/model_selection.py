"""Model selection on a validation hold-out, and the test accuracy it selects.

Why: the references report the *best test accuracy* over epochs, which selects
the model on the test set and flatters every method.  A cell can evaluate at
several points of its training (`eval_points`); the checkpoint with the best
validation accuracy gives the honest number (`test_acc_val_selected`), and the
best test accuracy is kept beside it, labelled as what it is (`test_acc_best`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

__all__ = ["segment_lengths", "SelectionCurve"]


def segment_lengths(train_steps: int, eval_points: int) -> list[int]:
    """Split the untimed training steps into `eval_points - 1` near-equal segments.

    An evaluation follows every segment, and one more follows the timed steps,
    so a cell evaluates `eval_points` times in all.  `eval_points == 1` means
    one segment (all untimed steps) with no evaluation after it.
    """
    if eval_points < 1:
        raise ValueError(f"eval_points must be >= 1, got {eval_points}")
    parts = max(eval_points - 1, 1)
    if eval_points > 1 and train_steps < parts:
        raise ValueError(f"{eval_points} evaluation points need at least {parts} untimed training steps")
    base, extra = divmod(train_steps, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass
class SelectionCurve:
    """Accuracy at each evaluation point, and the selections made from it."""

    steps: list[int] = field(default_factory=list)  # training steps done when evaluated
    val_acc: list[float] = field(default_factory=list)  # empty without a hold-out
    test_acc: list[float] = field(default_factory=list)

    def add(self, step: int, test_acc: float, val_acc: Optional[float]) -> None:
        self.steps.append(step)
        self.test_acc.append(test_acc)
        if val_acc is not None:
            self.val_acc.append(val_acc)

    @property
    def selected(self) -> int:
        """Index of the checkpoint with the best validation accuracy (first on ties); last without one."""
        if not self.val_acc:
            return len(self.test_acc) - 1
        return max(range(len(self.val_acc)), key=lambda i: (self.val_acc[i], -i))

    @property
    def test_acc_val_selected(self) -> float:
        return self.test_acc[self.selected]

    @property
    def val_acc_selected(self) -> Optional[float]:
        return self.val_acc[self.selected] if self.val_acc else None

    @property
    def test_acc_best(self) -> float:
        """Selected on the test set itself: optimistic, reported only beside the honest number."""
        return max(self.test_acc)

    def columns(self) -> dict:
        """The result-row columns (bench/store/row.py) this curve fills."""
        return {
            "val_acc": self.val_acc[-1] if self.val_acc else None,
            "eval_steps": self.steps,
            "val_acc_curve": self.val_acc,
            "test_acc_curve": self.test_acc,
            "test_acc_val_selected": self.test_acc_val_selected,
            "val_acc_selected": self.val_acc_selected,
            "test_acc_best": self.test_acc_best,
        }
