"""Grids: YAML files whose axes expand into cells, validated before anything runs.

A grid file:

    name: smoke                     # optional, defaults to the file name
    axes:                           # expanded as a product
      method: [bp, scpl]
      model: [convnet]
      dataset: [cifar10@synthetic]
      batch_size: [16]
      devices: [1, 2]
      trial: [0]                    # or an int N meaning trials 0..N-1
    settings: {steps: 3, ...}       # fixed for every cell; see CellSettings
    exclude: [{method: bp, devices: 2}]   # drop cells matching every key given
    include: [{method: bp, ...}]          # add cells (missing axes take the first value)
    include: [{method: contsup, settings: {method_options: {context: R0}}}]  # settings given replace the grid's

Every cell is checked (names, device split, batch size, model/data fit) and
the first problem is reported as one line naming the key and the valid choices.
"""
from __future__ import annotations

from bench import REPO_ROOT

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

__all__ = ["GridError", "CellSettings", "Cell", "Grid", "load_grid", "resolve_grid_path", "GRIDS_DIR", "AXES"]

GRIDS_DIR = REPO_ROOT / "bench" / "grids"
AXES = ("method", "model", "dataset", "batch_size", "devices", "trial")
TOP_LEVEL_KEYS = ("name", "description", "axes", "settings", "exclude", "include")


class GridError(ValueError):
    """A grid that cannot run as written; the message says what to change."""


@dataclass(frozen=True)
class CellSettings:
    """Fixed settings of a cell. Anything not named here is rejected."""

    warmup_steps: int = 2
    steps: int = 10  # timed steps (per-step sampling); the epoch is extrapolated
    eval_batches: Optional[int] = 4  # test batches for accuracy; null = the whole test set
    eval_batch_size: int = 256
    train_steps: int = 0  # untimed training steps before the timed ones (for accuracy)
    lr: float = 1e-3
    optimizer: str = "adam"
    temperature: float = 0.1
    projector: Optional[str] = None
    supcon_variant: str = "reference"
    local_loss: str = "supcon"  # SCPL-style stages: supcon | suncet | ntxent
    # method-specific options, either flat ({chunks: 8}: every method of the grid must accept them)
    # or per method ({gpipe_dist: {chunks: 8}, dascpl: {trigger_steps: [5, 10]}})
    method_options: dict = field(default_factory=dict)
    views: int = 1  # 2 = the "strong" two-view batch of contrastive methods (2N samples)
    augment: str = "none"
    balance: Union[str, list] = "auto"  # "auto" (by measured stage time) | "even" | [stages per device]
    device_kind: str = "auto"
    # intra-op threads of each device's worker; null = the cores divided by the grid's largest
    # device count (at least 1), so a "device" is the same resource in every cell of a grid
    threads_per_device: Optional[int] = None
    queue_depth: int = 2
    timeout_s: float = 900.0
    seed: int = 0
    model_kwargs: dict = field(default_factory=dict)
    # data handling (docs/DATA.md): a seeded validation hold-out of the training set for
    # model selection, seeded label noise on the training split, GloVe for text embeddings
    val_fraction: float = 0.1
    noise_rate: float = 0.0
    glove: bool = False
    count_train_memory: bool = True  # train_mem_bytes: one extra untimed step on a copy (bench/training_memory.py)
    data_workers: int = 0  # DataLoader workers preparing batches (before timing; pinned memory with CUDA)
    eval_points: int = 1  # evaluations (val + test) spread over training; >1 enables model selection
    # {wait, warmup, active}: extra profiled steps after the timed ones (docs/PROFILING.md); None = off
    profile: Optional[dict] = None

    def options_for(self, method: str) -> dict:
        """The `method_options` that apply to `method` (see the field's comment)."""
        from methods import list_methods

        opts = self.method_options
        if opts and all(key in list_methods() and isinstance(v, dict) for key, v in opts.items()):
            return dict(opts.get(method, {}))
        return dict(opts)

    @classmethod
    def from_mapping(cls, mapping: dict, where: str) -> "CellSettings":
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in mapping:
            if key not in valid:
                raise GridError(f"{where}: unknown setting {key!r}; valid settings: {', '.join(valid)}")
        if mapping.get("profile") is not None:
            from bench.profiling.schedule import ProfileSchedule

            try:
                ProfileSchedule.from_setting(mapping["profile"])
            except ValueError as exc:
                raise GridError(f"{where}: {exc}") from None
        return cls(**mapping)


@dataclass(frozen=True)
class Cell:
    grid: str
    method: str
    model: str
    dataset: str
    batch_size: int
    devices: int
    trial: int
    settings: CellSettings

    @property
    def seed(self) -> int:
        return self.settings.seed + self.trial

    def identity(self) -> dict:
        """Everything that determines the measurement (the grid name does not)."""
        d = dataclasses.asdict(self)
        d.pop("grid")
        d["settings"].pop("timeout_s")
        d["settings"]["method_options"] = self.settings.options_for(self.method)  # only what this method reads
        if d["settings"].get("profile") is None:  # profiling off: ids stay those of older grids
            d["settings"].pop("profile", None)
        return d

    @property
    def cell_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return f"{self.method}/{self.model}/{self.dataset}/b{self.batch_size}/d{self.devices}/t{self.trial}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Cell":
        d = json.loads(text)
        d["settings"] = CellSettings(**d["settings"])
        return cls(**d)


@dataclass
class Grid:
    name: str
    path: Path
    cells: list[Cell]
    description: str = ""


def resolve_grid_path(name_or_path: str) -> Path:
    """A path that exists, else a shipped grid by name (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (GRIDS_DIR / name_or_path, GRIDS_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = sorted(p.name for p in GRIDS_DIR.glob("*.yaml"))
    raise GridError(f"grid {name_or_path!r} not found: give a path to a YAML file or one of {shipped}")


def _as_list(key: str, value: Any) -> list:
    if key == "trial" and isinstance(value, int):
        return list(range(value))
    return value if isinstance(value, list) else [value]


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
    from bench.execution.devices import available_cores

    if not combos:
        return combos
    largest = max(int(c["devices"]) if isinstance(c["devices"], int) else 1 for c, _ in combos)
    share = max(1, available_cores() // max(largest, 1))
    return [(c, s if s.threads_per_device is not None else dataclasses.replace(s, threads_per_device=share))
            for c, s in combos]


def load_grid(name_or_path: str) -> Grid:
    """Read, expand and validate a grid; raises GridError with a one-line message."""
    path = resolve_grid_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GridError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise GridError(f"{path}: a grid must be a mapping with keys {TOP_LEVEL_KEYS}")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise GridError(f"{path.name}: unknown key {key!r}; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
    name = raw.get("name") or path.stem
    axes = raw.get("axes") or {}
    for key in axes:
        if key not in AXES:
            raise GridError(f"{path.name}: unknown axis {key!r}; valid axes: {', '.join(AXES)}")
    missing = [a for a in AXES if a not in axes and a != "trial"]
    if missing:
        raise GridError(f"{path.name}: axes {missing} missing; every grid names {', '.join(AXES[:-1])}")
    axes = {a: _as_list(a, axes.get(a, [0])) for a in AXES}
    settings = CellSettings.from_mapping(raw.get("settings") or {}, path.name)
    for rules_key in ("exclude", "include"):
        for rule in raw.get(rules_key) or []:
            bad = [k for k in rule if k not in AXES and (rules_key, k) != ("include", "settings")]
            if bad:
                raise GridError(f"{path.name}: {rules_key} rule uses {bad}; rules may only name axes {AXES} "
                                "(an include rule may also give settings)")
    combos = [(dict(zip(AXES, values)), settings) for values in itertools.product(*(axes[a] for a in AXES))]
    combos = [(c, s) for c, s in combos if not any(_matches(c, r) for r in raw.get("exclude") or [])]
    for rule in raw.get("include") or []:
        # Settings are not axes; an include rule may replace some for its cell (e.g. method_options),
        # so one grid can compare variants of a method that differ only in settings.
        extra = rule.get("settings") or {}
        rule_settings = CellSettings.from_mapping({**(raw.get("settings") or {}), **extra},
                                                  f"{path.name}: include") if extra else settings
        combos.append(({a: rule.get(a, axes[a][0]) for a in AXES}, rule_settings))
    combos = _same_size_devices(combos)
    cells, seen = [], set()
    for combo, cell_settings in combos:
        cell = Cell(grid=name, settings=cell_settings, **combo)
        if cell.cell_id not in seen:
            seen.add(cell.cell_id)
            cells.append(cell)
    from bench.grid.feasibility import validate_cell  # imports torch and the registries: only when needed

    for cell in cells:
        validate_cell(cell, path.name)
    return Grid(name=name, path=path, cells=cells, description=raw.get("description", ""))
