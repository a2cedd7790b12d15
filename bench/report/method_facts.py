"""What the report knows about a method, read from the method's own class.

Why one place: the tables' row order, the paper's spelling, which methods train
with BP's gradient (never bolded as the best local method) and each method's
colour are declared on the method (`methods.base.Method`: `display_name`,
`report_order`, `paper_order`, `bp_gradient`, `colour`), so a new method needs no
edit here.  Results may name a method that is no longer registered (an old
parquet): it keeps its own name, sorts after every registered method, takes a
colour from a fallback palette and is not counted as training with BP's gradient.

Variants (`bp[lr=0.1]`, bench/report/variants.py) share their method's facts.
BP is named here only as *the baseline* every speedup is measured against
(`bench.report.baseline.BASELINE_METHOD`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from bench.report.baseline import BASELINE_METHOD, base_method

__all__ = ["MethodFacts", "UNREGISTERED_ORDER", "method_facts", "report_rank", "paper_rank", "display_name",
           "uses_bp_gradient", "method_colour", "method_label"]

UNREGISTERED_ORDER = 10_000  # after every registered method, whatever order it declares


@dataclass(frozen=True)
class MethodFacts:
    """The report's view of one method (of its base name: variants share it)."""

    name: str
    display_name: str
    report_order: int
    paper_order: int
    bp_gradient: bool
    colour: Optional[str]  # None: a colour from the fallback palette


def method_facts(method: str) -> MethodFacts:
    """The facts the method's class declares, or the fallback for a name no longer registered.

    Not cached: a method registered later in the process (a plugin module) is found when asked.
    """
    from methods import UnknownMethodError, method_class  # torch: only once a report asks

    name = base_method(method)
    try:
        cls = method_class(name)
    except UnknownMethodError:
        return MethodFacts(name, name, UNREGISTERED_ORDER, UNREGISTERED_ORDER, False, None)
    return MethodFacts(name, cls.display_name or name, cls.report_order, cls.paper_order, cls.bp_gradient,
                       cls.colour)


def report_rank(method: str) -> int:
    """Sort key of a method's rows in the speed and time-to-accuracy tables."""
    return method_facts(method).report_order


def paper_rank(method: str) -> int:
    """Sort key of a method's rows in the paper's accuracy tables (Tables 4-8)."""
    return method_facts(method).paper_order


def display_name(method: str) -> str:
    """`SCPL` of `scpl`, `ContSup[context=R1E]` of `contsup[context=R1E]`: the method's own spelling, variants kept."""
    facts = method_facts(method)
    return facts.display_name + str(method)[len(facts.name):]


def uses_bp_gradient(method: str) -> bool:
    """Whether the method trains with BP's gradient, only scheduled differently (BP, GPipe, DDP)."""
    return method_facts(method).bp_gradient


def method_colour(method: str) -> Any:
    """The colour of a method (variants share their method's), the same in every figure."""
    facts = method_facts(method)
    if facts.colour is not None:
        return facts.colour
    import seaborn as sns

    return sns.color_palette("husl", 16)[sum(map(ord, facts.name)) % 16]


def method_label(method: str, devices: int, short: bool = False) -> str:
    """A table row's name: `BP (1 device)`, `scpl (2 devices)`; `short`: `scpl (2 dev)` (figures)."""
    name = method.upper() if method == BASELINE_METHOD else method
    unit = "dev" if short else f"device{'s' if devices > 1 else ''}"
    return f"{name} ({devices} {unit})"
