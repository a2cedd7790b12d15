"""The one place that defines a result row and its parquet schema.

One row per grid cell x trial.  Every row carries what was measured and how:
real or synthetic data, measured or extrapolated epochs, device names, thread
counts, versions and commit, so a table can always say what it is built from.

Rows are built from the cell's phase columns by `bench.store.records.from_columns`,
which refuses a column not declared here; `slots` refuses a misspelled attribute too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from bench.store.identity import CellIdentity
from bench.store.records import arrow_schema

__all__ = ["SCHEMA_VERSION", "ResultRow", "ARROW_SCHEMA", "STATUSES"]

SCHEMA_VERSION = 2  # 2: attempt, attempt_id, finished_at (a cell's rows are its attempts)
STATUSES = ("ok", "failed", "nan", "timeout", "killed")
"""Every status a row can have: "killed" is a cell process ended by a signal (e.g. the OOM killer)."""


@dataclass(slots=True)
class ResultRow(CellIdentity):
    # identity: cell_id, grid, method, model, dataset, batch_size, devices, trial (CellIdentity), then
    data_kind: str  # "synthetic" | "real"
    seed: int
    status: str = "ok"
    error: Optional[str] = None
    # attempts: every run of a cell is kept; readers take the latest (bench/store/read.py)
    attempt: Optional[int] = None  # 1, 2, ... per cell; None (old rows) = order of appearance
    attempt_id: Optional[str] = None  # unique per attempt: deduplicates a row merged but not yet deleted
    finished_at: Optional[str] = None  # UTC ISO time the attempt's row was stored
    # where it ran
    device_kind: Optional[str] = None
    device_names: list[str] = field(default_factory=list)
    threads_per_device: Optional[int] = None
    threads_total: Optional[int] = None
    cores: Optional[int] = None
    oversubscribed: Optional[bool] = None
    # CPU float mode of the cell's threads: denormals flushed to zero (bench/execution/threads.py use_threads)
    cpu_denormals_flushed: Optional[bool] = None
    balance: list[int] = field(default_factory=list)
    executor: Optional[str] = None  # "sequential" | "threads" | "processes" | "ranks" (bench/execution/choice.py)
    stage_costs_s: list[float] = field(default_factory=list)  # profiled (on <= 64 samples) to choose the balance
    # timing
    warmup_steps: Optional[int] = None
    timed_steps: Optional[int] = None
    step_time_median_s: Optional[float] = None
    step_time_p10_s: Optional[float] = None
    step_time_p90_s: Optional[float] = None
    step_times_s: list[float] = field(default_factory=list)
    timed_total_s: Optional[float] = None
    steps_per_epoch: Optional[int] = None
    epoch_time_s: Optional[float] = None
    epoch_time_kind: Optional[str] = None  # "measured" (training run: the median epoch) | "extrapolated"
    # training runs (`epochs` set; docs/TRAINING.md): per-epoch detail is in curves.parquet
    epochs: Optional[int] = None  # epochs trained; None = the sampled mode
    epoch_times_s: list[float] = field(default_factory=list)  # each epoch, devices synchronised
    train_wall_s: Optional[float] = None  # training wall-clock, evaluation and checkpoints excluded
    data_wait_s: Optional[float] = None  # time the feeding loop was blocked on the data loader, in all
    data_wait_fraction: Optional[float] = None  # data_wait_s / train_wall_s
    resumed_from_epoch: Optional[int] = None  # the checkpoint's epoch when this attempt resumed a run
    data_time_s: Optional[float] = None  # preparing batches ahead; never inside step time
    throughput_samples_s: Optional[float] = None
    stage_busy_s: list[float] = field(default_factory=list)
    device_busy_s: list[float] = field(default_factory=list)
    # quality
    final_train_loss: Optional[float] = None
    # sha256 (hex) of every trained parameter and buffer, stage by stage (bench/cell/param_checksum.py):
    # equal for equal final networks however the stages were spread over processes; None = did not train
    param_checksum: Optional[str] = None
    test_acc: Optional[float] = None  # final head after all training (the speedup tables' number)
    # model selection (bench/cell/model_selection.py): accuracy at each evaluation point
    val_acc: Optional[float] = None  # on the hold-out, at the end
    eval_steps: list[int] = field(default_factory=list)
    val_acc_curve: list[float] = field(default_factory=list)
    test_acc_curve: list[float] = field(default_factory=list)
    test_acc_val_selected: Optional[float] = None  # test accuracy of the best-validation checkpoint
    val_acc_selected: Optional[float] = None
    test_acc_best: Optional[float] = None  # best test accuracy over checkpoints: selected on test, optimistic
    # training health (bench/store/health.py): did_not_learn, still_improving, unstable, exit<k>:...;
    # [] = healthy or not judged; null = a row written before the column (the report recomputes it)
    health: list[str] = field(default_factory=list)
    glove_coverage: Optional[float] = None  # fraction of vocabulary words found in GloVe
    noise_rate: Optional[float] = None  # fraction of training labels corrupted (seeded)
    val_fraction: Optional[float] = None  # training items held out for validation
    eval_samples: Optional[int] = None
    # what the data read holds (data/observed.py): the head has num_classes outputs
    num_classes: Optional[int] = None
    train_items: Optional[int] = None  # training split actually read, after the validation hold-out
    data_note: Optional[str] = None  # how the data read differs from the published dataset; None = it does not
    # early exits (Early Exit, DASCPL): per exit, then per policy ("fixed:k", "confidence:p", "entropy:h")
    exit_acc: list[float] = field(default_factory=list)
    exit_time_s: list[float] = field(default_factory=list)
    exit_params: list[int] = field(default_factory=list)
    exit_policy: list[str] = field(default_factory=list)
    exit_policy_acc: list[float] = field(default_factory=list)
    exit_policy_depth: list[float] = field(default_factory=list)
    exit_policy_time_s: list[float] = field(default_factory=list)
    # size
    params_effective: Optional[int] = None
    params_affiliated: Optional[int] = None
    peak_mem_bytes: Optional[int] = None
    peak_mem_per_device: list[int] = field(default_factory=list)
    peak_mem_kind: Optional[str] = None  # "cuda_max_allocated" | "cpu_peak_rss"
    # counted, not sampled (bench/cell/training_memory.py): saved activations + params + grads + optimizer
    # state of one training step, per stage for decoupled methods, whole network for coupled ones
    train_mem_bytes: list[int] = field(default_factory=list)
    train_mem_max_bytes: Optional[int] = None  # the largest entry: the least one device must hold
    # profiling: a separate, untimed run under torch.profiler (docs/PROFILING.md); None when off
    trace_dir: Optional[str] = None  # results/<grid>/traces/<cell>/
    profiled_step_median_s: Optional[float] = None
    profiler_slowdown: Optional[float] = None  # profiled median step / timed median step
    trace_span_s: Optional[float] = None  # the recorded iterations' span the fractions are over
    trace_stage_busy_s: list[float] = field(default_factory=list)  # per stage, from the trace
    bubble_fraction: Optional[float] = None  # share of device time idle in the span
    overlap_fraction: Optional[float] = None  # share of the span with >= 2 devices busy
    # provenance
    settings_json: Optional[str] = None
    torch_version: Optional[str] = None
    python_version: Optional[str] = None
    git_sha: Optional[str] = None
    host: Optional[str] = None
    started_at: Optional[str] = None
    duration_s: Optional[float] = None
    schema_version: int = SCHEMA_VERSION


ARROW_SCHEMA = arrow_schema(ResultRow)
