"""A figure that cannot be drawn costs only itself.

Why: figures are drawn after every cell of a run has finished and been stored.
A plotting library refusing a shape it was not sized for (seaborn's
`ValueError: left cannot be >= right` when a legend is wider than the figure, a
trace file that no longer parses) must not turn a run whose cells all finished
into exit 1, nor cost the tables and report.html.  Every figure is drawn
through `FigureLog.save` (or `FigureLog.attempt` for a step that writes several):
a failure is written to stderr as one line naming the figure, kept for the
report, and the next figure is drawn.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

__all__ = ["FigureFailure", "FigureLog"]


@dataclass(frozen=True)
class FigureFailure:
    """A figure (its file stem) that was not drawn, and why in one line."""

    figure: str
    error: str

    def __str__(self) -> str:
        return f"{self.figure}: {self.error}"


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@dataclass
class FigureLog:
    """The figures of one report that failed; each failure also goes to stderr as it happens."""

    failures: list[FigureFailure] = field(default_factory=list)

    def attempt(self, name: str, draw: Callable[[], list[Path]]) -> list[Path]:
        """`draw()`'s files, or [] with the failure recorded under `name` (figures it opened are closed)."""
        import matplotlib.pyplot as plt

        before = set(plt.get_fignums())
        try:
            return draw()
        except Exception as exc:  # noqa: BLE001 - a figure's failure is reported, never raised
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
            self.fail(name, exc)
            return []

    def save(self, stem: Path, draw: Callable[[], Optional[Any]]) -> list[Path]:
        """Draw one figure and write `stem.png|svg`; `draw` returning None means nothing to draw."""
        from bench.report.timeline import save_figure

        def drawn() -> list[Path]:
            fig = draw()
            return [] if fig is None else save_figure(fig, stem)

        return self.attempt(Path(stem).name, drawn)

    def fail(self, name: str, exc: BaseException) -> None:
        failure = FigureFailure(name, _one_line(exc))
        self.failures.append(failure)
        print(f"warning: figure {failure} (not drawn; the tables and other figures are written)", file=sys.stderr)

    def markdown(self) -> str:
        """One line per figure not drawn; empty when every figure was."""
        if not self.failures:
            return ""
        return f"**{len(self.failures)} figure(s) not drawn:** " + "; ".join(f"`{f.figure}`: {f.error}"
                                                                            for f in self.failures)
