"""Grids: YAML files whose axes expand into cells, validated before anything runs.

A grid file:

    name: smoke                     # optional, defaults to the file name; a plain name
    axes:                           # expanded as a product
      method: [bp, scpl]
      model: [convnet]
      dataset: [cifar10@synthetic]
      batch_size: [16]
      devices: [1, 2]
      trial: [0]                    # or an int N meaning trials 0..N-1
    settings: {steps: 3, ...}       # fixed for every cell; see bench/grid/settings.py
    exclude: [{method: bp, devices: 2}]   # drop cells matching every key given
    include: [{method: bp, ...}]          # add cells (missing axes take the first value)
    include: [{method: contsup, settings: {method_options: {context: R0}}}]  # settings given replace the grid's
    include: [{method: [scpl, dascpl], batch_size: 1024, settings: {views: 2}}]  # a list: one cell per value

Every value is checked (types, ranges and choices by the settings schema; names,
device split, batch size, method x model fit by `feasibility`), and every
problem found is reported at once, one line each with its key path.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bench import REPO_ROOT
from bench.store.identity import CellIdentity

from .settings import ADDED_DEFAULTS, CellSettings, format_validation_error, settings_problems

__all__ = ["GridError", "CellSettings", "Cell", "Grid", "load_grid", "read_grid_file", "resolve_grid_path",
           "apply_overrides", "shipped_grids", "GRIDS_DIR", "AXES"]

GRIDS_DIR = REPO_ROOT / "bench" / "grids"
AXES = ("method", "model", "dataset", "batch_size", "devices", "trial")
TOP_LEVEL_KEYS = ("name", "description", "axes", "settings", "exclude", "include")
PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class GridError(ValueError):
    """A grid that cannot run as written; each problem is one line saying what to change."""

    def __init__(self, problems: "str | Iterable[str]") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(dict.fromkeys(problems))
        super().__init__("\n".join(self.problems))


class _Axes(BaseModel):
    """The axes' types; a scalar stands for a one-value list, `trial: N` for trials 0..N-1."""

    model_config = ConfigDict(strict=True, extra="forbid")

    method: list[str] = Field(min_length=1)
    model: list[str] = Field(min_length=1)
    dataset: list[str] = Field(min_length=1)
    batch_size: list[int] = Field(min_length=1)
    devices: list[int] = Field(min_length=1)
    trial: list[int] = Field([0], min_length=1)

    @field_validator("method", "model", "dataset", "batch_size", "devices", "trial", mode="before")
    @classmethod
    def _as_list(cls, value: Any, info: Any) -> Any:
        if info.field_name == "trial" and isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("a trial count must be >= 1 (or give a list of trial indices like [0, 1])")
            return list(range(value))
        return value if isinstance(value, list) else [value]

    @field_validator("batch_size", "devices")
    @classmethod
    def _positive(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if v < 1]
        if bad:
            raise ValueError(f"values must be positive integers, got {bad}")
        return values

    @field_validator("trial")
    @classmethod
    def _non_negative(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if v < 0]
        if bad:
            raise ValueError(f"trial indices must be >= 0, got {bad}")
        return values


@dataclass
class Cell(CellIdentity):
    """A point of the grid: its identity (the axes, and `cell_id` hashed from them and the settings) and settings.

    Built as Cell(grid, method, model, dataset, batch_size, devices, trial, settings); `cell_id` is not
    an argument but computed from the rest (`identity()`), once, so a rerun finds finished cells by it.
    """

    cell_id: str = field(init=False, repr=False, compare=False)
    settings: CellSettings

    def __post_init__(self) -> None:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        self.cell_id = hashlib.sha1(blob.encode()).hexdigest()[:12]

    def __setattr__(self, name: str, value: Any) -> None:
        """Read-only once built (the id hashes the rest); `dataclasses.replace` makes a changed copy."""
        if hasattr(self, "cell_id"):  # set last, by __post_init__
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}: a Cell is read-only")
        object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple:
        """Copies and pickles go through the constructor (and so through the read-only guard's order)."""
        return Cell.from_json, (self.to_json(),)

    @property
    def seed(self) -> int:
        return self.settings.seed + self.trial

    def identity(self) -> dict:
        """Everything that determines the measurement (the grid name and the timeout do not).

        Computed once per cell (grids of 10,000 cells ask for it several times each): treat it as read-only.
        """
        return self._identity

    @functools.cached_property
    def _identity(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name not in ("cell_id", "grid", "settings")}
        settings = self.settings.as_dict()
        settings.pop("timeout_s")
        settings["method_options"] = self.settings.options_for(self.method)  # only what this method reads
        if settings.get("profile") is None:  # profiling off: ids stay those of older grids
            settings.pop("profile", None)
        for key, default in ADDED_DEFAULTS.items():
            if settings.get(key) == default:
                settings.pop(key)
        d["settings"] = settings
        return d

    @property
    def settings_json(self) -> str:
        """The settings part of `identity()` as stored in a row's `settings_json` (sorted keys)."""
        return json.dumps(self.identity()["settings"], sort_keys=True)

    @property
    def label(self) -> str:
        return f"{self.method}/{self.model}/{self.dataset}/b{self.batch_size}/d{self.devices}/t{self.trial}"

    def to_json(self) -> str:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        d["settings"] = self.settings.as_dict()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "Cell":
        d = json.loads(text)
        d["settings"] = CellSettings.model_validate(d["settings"])
        return cls(**d)


@dataclass
class Grid:
    name: str
    path: Path
    cells: list[Cell]
    description: str = ""


def shipped_grids() -> list[str]:
    """Names of the grids shipped in bench/grids/ (what `--grid NAME` accepts)."""
    return sorted(p.stem for p in GRIDS_DIR.glob("*.yaml"))


def resolve_grid_path(name_or_path: str) -> Path:
    """A path that exists, else a shipped grid by name (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (GRIDS_DIR / name_or_path, GRIDS_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    raise GridError(f"grid {name_or_path!r} not found: give a path to a YAML file or one of {shipped_grids()}")


def apply_overrides(raw: dict, overrides: Iterable[str]) -> list[str]:
    """Apply `--set KEY=VALUE` overrides to the raw grid mapping in place; returns problems.

    KEY is a dotted path (`settings.steps`, `axes.batch_size`,
    `settings.method_options.gpipe.chunks`); VALUE is YAML (`[32, 64]`, `2`, `null`).
    """
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(f"--set {item!r}: write KEY=VALUE, e.g. --set settings.steps=2")
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            problems.append(f"--set {key}: {text!r} is not a YAML value")
            continue
        parts = key.split(".")
        if parts[0] not in TOP_LEVEL_KEYS:
            problems.append(f"--set {key}: unknown top-level key {parts[0]!r}; valid: {', '.join(TOP_LEVEL_KEYS)}")
            continue
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(f"--set {key}: {part!r} is not a mapping in this grid")
                break
            node = child
        else:
            node[parts[-1]] = value
    return problems


def read_grid_file(path: Path) -> dict:
    """The grid file's YAML as a mapping (GridError when it is not one)."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GridError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise GridError(f"{path}: a grid must be a mapping with keys {', '.join(TOP_LEVEL_KEYS)}")
    return raw


def _matches(values: dict, rule: dict) -> bool:
    return all(values.get(k) == v for k, v in rule.items())


def _same_size_devices(combos: list[tuple[dict, CellSettings]]) -> list[tuple[dict, CellSettings]]:
    """Fill `threads_per_device: null` with cores // the grid's largest device count.

    Why: on CPU a device is a share of the cores.  If 1-device cells took every
    core and 2-device cells half each, "speedup on 2 devices" would compare equal
    hardware in one column and double hardware in none; fixing the share per grid
    keeps the paper's meaning (N devices = N times the hardware of one), and the
    resource-matched rivals (BP on N threads, DDP) are grid cells of their own.
    """
    from bench.execution.threads import cores_per_device

    if not combos:
        return combos
    share = cores_per_device(max(int(c["devices"]) for c, _ in combos))
    sized: dict[int, CellSettings] = {}  # one copy per distinct settings object, shared by its cells
    for _, s in combos:
        if id(s) not in sized:
            sized[id(s)] = s if s.threads_per_device is not None else s.model_copy(update={"threads_per_device": share})
    return [(c, sized[id(s)]) for c, s in combos]


def _check_structure(raw: dict, where: str) -> list[str]:
    """Problems with the grid's top-level shape, its name, axes and rules (not yet the cells)."""
    problems = []
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f"{where}: {key}: unknown key; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not PLAIN_NAME.match(name) or ".." in name):
        problems.append(f"{where}: name: {name!r}: a grid name becomes a folder under results/: use letters, "
                        "digits, '_', '-' and '.' only (no '/', no '..')")
    for key in ("axes", "settings"):
        if key in raw and not isinstance(raw[key], dict):
            problems.append(f"{where}: {key}: must be a mapping ({key}: {{name: value, ...}}), "
                            f"not a {type(raw[key]).__name__}")
    for key in ("exclude", "include"):
        rules = raw.get(key) or []
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            problems.append(f"{where}: {key}: must be a list of mappings like [{{method: bp, devices: 2}}]")
            continue
        for i, rule in enumerate(rules):
            bad = [k for k in rule if k not in AXES and (key, k) != ("include", "settings")]
            if bad:
                problems.append(f"{where}: {key}[{i}]: {bad}: rules may only name axes {', '.join(AXES)} "
                                "(an include rule may also give settings)")
    if not isinstance(raw.get("description", ""), str):
        problems.append(f"{where}: description: must be text")
    return problems


def load_grid(name_or_path: str, overrides: Iterable[str] = ()) -> Grid:
    """Read, override, expand and validate a grid; raises GridError listing every problem.

    The last check, whether each cell can run (`feasibility.py`), imports torch and the
    method and model registries (models are built on the meta device).
    """
    path = resolve_grid_path(name_or_path)
    raw = read_grid_file(path)
    where = path.name
    problems = apply_overrides(raw, overrides)
    problems += _check_structure(raw, where)
    if any(not isinstance(raw.get(key) or {}, dict) for key in ("axes", "settings")):
        raise GridError(problems)
    name = raw.get("name") or path.stem
    if raw.get("name") is None and not PLAIN_NAME.match(name):
        problems.append(f"{where}: the file name {path.stem!r} is not a plain name; give the grid a `name:`")
    axes = None
    if "axes" not in raw:
        problems.append(f"{where}: axes: missing; every grid names {', '.join(AXES[:-1])}")
    else:
        try:
            axes = _Axes.model_validate(raw["axes"])
        except ValidationError as exc:
            problems += [f"{where}: {line}" for line in format_validation_error(exc, "axes")]
    settings, settings_errors = settings_problems(raw.get("settings") or {}, "settings")
    problems += [f"{where}: {line}" for line in settings_errors]
    include_settings: list[Optional[CellSettings]] = []
    rules_ok = all(isinstance(raw.get(key) or [], list) and all(isinstance(r, dict) for r in raw.get(key) or [])
                   for key in ("exclude", "include"))
    for i, rule in enumerate(raw.get("include") or [] if rules_ok else []):
        extra = rule.get("settings")
        if extra is None:
            include_settings.append(None)
            continue
        merged = {**(raw.get("settings") or {}), **extra} if isinstance(extra, dict) else extra
        rule_settings, errors = settings_problems(merged, f"include[{i}].settings")
        problems += [f"{where}: {line}" for line in errors]
        include_settings.append(rule_settings)
    for i, rule in enumerate(raw.get("include") or [] if rules_ok else []):
        given = {a: rule[a] for a in AXES if a in rule and not (a == "trial" and isinstance(rule[a], int))}
        if given:  # an include rule's axis values get the axes' own checks
            try:
                _Axes.model_validate({**{a: ["x"] if a in ("method", "model", "dataset") else [1] for a in AXES},
                                      **given})
            except ValidationError as exc:
                problems += [f"{where}: {line}" for line in format_validation_error(exc, f"include[{i}]")]
    if problems or axes is None or settings is None:
        raise GridError(problems)

    values = {a: getattr(axes, a) for a in AXES}
    combos = [(dict(zip(AXES, v)), settings) for v in itertools.product(*(values[a] for a in AXES))]
    excluded = [(c, s) for c, s in combos if any(_matches(c, r) for r in raw.get("exclude") or [])]
    combos = [(c, s) for c, s in combos if not any(_matches(c, r) for r in raw.get("exclude") or [])]
    for rule, rule_settings in zip(raw.get("include") or [], include_settings):
        # Settings are not axes; an include rule may replace some for its cell (e.g. method_options),
        # so one grid can compare variants of a method that differ only in settings.  A list value
        # expands like an axis (the product of the rule's lists), so a block of cells with their own
        # settings (the paper's batch 1024 for SCPL beside BP's 128) is one rule, not one per cell.
        choices = [rule[a] if isinstance(rule.get(a), list) else [rule.get(a, values[a][0])] for a in AXES]
        for chosen in itertools.product(*choices):
            combos.append((dict(zip(AXES, chosen)), rule_settings or settings))
    if not combos:
        raise GridError(f"{where}: no cells: the exclude rules remove all {len(excluded)} cells of the axes")
    combos = _same_size_devices(combos)
    cells, seen = [], set()
    for combo, cell_settings in combos:
        cell = Cell(grid=name, settings=cell_settings, **combo)
        if cell.cell_id not in seen:
            seen.add(cell.cell_id)
            cells.append(cell)
    from .feasibility import cell_problems  # torch and the registries: not on importing the package

    by_problem: dict[str, list[Cell]] = {}
    checked: dict[tuple, list[str]] = {}  # trials of one configuration share their problems
    for cell in cells:
        key = (cell.method, cell.model, cell.dataset, cell.batch_size, cell.devices, id(cell.settings))
        if key not in checked:
            checked[key] = cell_problems(cell)
        for problem in checked[key]:
            by_problem.setdefault(problem, []).append(cell)
    if by_problem:
        raise GridError(f"{where}: cell {found[0].label}"
                        + (f" (and {len(found) - 1} more like it)" if len(found) > 1 else "") + f": {problem}"
                        for problem, found in by_problem.items())
    return Grid(name=name, path=path, cells=cells, description=raw.get("description", ""))

