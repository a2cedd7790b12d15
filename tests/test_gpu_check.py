"""`make gpu-check` is harmless without a GPU; a grid asking for more GPUs than exist is refused up front."""
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from bench import REPO_ROOT
from bench.execution.capacity import check_device_counts
from bench.gpu_check import (
    NO_CUDA_MESSAGE,
    check_same_training,
    main,
    plan_cells,
    plan_torchrun_cells,
    trace_kernels,
)


def _cells(*counts, kind="cuda"):
    return [SimpleNamespace(devices=n, settings=SimpleNamespace(device_kind=kind)) for n in counts]


def test_without_cuda_gpu_check_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([]) == 0
    assert capsys.readouterr().out.strip() == NO_CUDA_MESSAGE


@pytest.mark.slow
def test_gpu_check_module_runs_here():
    if torch.cuda.is_available():  # pragma: no cover - the real check is `make gpu-check`
        return
    out = subprocess.run([sys.executable, "-m", "bench.gpu_check"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and NO_CUDA_MESSAGE in out.stdout


def test_plan_covers_every_executor_and_each_ddp_count():
    plan = plan_cells(8)
    labels = [(p.label, p.cell.devices) for p in plan]
    assert ("scpl threads", 4) in labels and ("scpl processes", 4) in labels  # ConvNet has 4 stages
    assert ("gpipe", 4) in labels and ("gpipe_dist", 4) in labels and ("bp", 1) in labels
    assert [n for label, n in labels if label == "ddp"] == list(range(1, 9))
    assert all(p.cell.batch_size % p.cell.devices == 0 for p in plan if p.label == "ddp")
    assert all(p.cell.settings.device_kind == "cuda" for p in plan)
    assert [p.label for p in plan_cells(1)] == ["bp", "scpl", "ddp", "ddp, 1 epoch"]  # one GPU: nothing to split
    by_label = {p.label: p.cell.settings for p in plan}
    for label in ("scpl processes", "gpipe_dist", "scpl threads"):  # the split timed on the GPU, memory counted
        assert by_label[label].balance == "auto" and by_label[label].count_train_memory
    for label in ("scpl processes, 1 epoch", "gpipe_dist, 1 epoch", "ddp, 1 epoch"):
        assert by_label[label].is_training_run and by_label[label].profile is None


def test_trace_kernels_counts_kernels_under_labels(tmp_path):
    events = [
        {"ph": "X", "cat": "gpu_user_annotation", "name": "stage1/forward", "pid": 0, "tid": 7, "ts": 100, "dur": 50},
        {"ph": "X", "cat": "kernel", "name": "sgemm", "pid": 0, "tid": 7, "ts": 110, "dur": 5},
        {"ph": "X", "cat": "kernel", "name": "ncclDevKernel_SendRecv", "pid": 0, "tid": 9, "ts": 300, "dur": 5},
        {"ph": "X", "cat": "kernel", "name": "sgemm", "pid": 1, "tid": 7, "ts": 120, "dur": 5},  # other GPU
    ]
    (tmp_path / "rank0.1.pt.trace.json").write_text(json.dumps({"traceEvents": events}))
    assert trace_kernels(tmp_path) == (3, 1, {0}, True)


def test_enough_gpus_is_no_problem():
    assert check_device_counts(_cells(1, 2, 2), gpus=2) is None
    assert check_device_counts(_cells(4, 8, kind="cpu"), gpus=1) is None  # CPU workers need no GPU
    assert check_device_counts(_cells(4, kind="auto"), gpus=0) is None  # auto without CUDA = CPU workers


def test_too_many_gpus_is_one_line_naming_what_fits():
    message = check_device_counts(_cells(1, 2, 4, 8), gpus=2)
    assert "\n" not in message
    assert "8 GPUs" in message and "has 2 GPUs" in message and "devices=4, 8" in message
    assert "--only devices=1 or --only devices=2" in message
    assert "no GPU" in check_device_counts(_cells(1), gpus=0)
    assert "no cell of this grid fits" in check_device_counts(_cells(4, kind="auto"), gpus=2)


def test_torchrun_plan_runs_the_three_distributed_methods_with_nccl():
    """With 2+ GPUs: DDP on all, gpipe_dist and SCPL processes on up to 4; one GPU: DDP as one rank only."""
    plan = plan_torchrun_cells(8)
    assert [(p.label, p.cell.method, p.cell.devices, p.torchrun, p.needs_nccl) for p in plan] == [
        ("ddp (torchrun)", "ddp", 8, True, True), ("gpipe_dist (torchrun)", "gpipe_dist", 4, True, True),
        ("scpl processes (torchrun)", "scpl", 4, True, True)]
    assert plan[2].cell.settings.executor == "processes" and plan[0].cell.batch_size % 8 == 0
    assert [(p.label, p.cell.devices, p.needs_nccl) for p in plan_torchrun_cells(1)] == [("ddp (torchrun)", 1, False)]
    assert all(p.cell.settings.device_kind == "cuda" for p in plan)


def test_runs_that_must_train_alike_are_compared_by_final_loss():
    """SCPL processes against threads on the same GPUs, and each torchrun row against the same cell run by its cell process."""
    plan = plan_cells(2) + plan_torchrun_cells(2)
    for item in plan:
        item.row = SimpleNamespace(status="ok", final_train_loss=2.0)
    assert check_same_training(plan) == []
    by_label = {item.label: item for item in plan}
    by_label["scpl processes (torchrun)"].row.final_train_loss = 2.01
    by_label["ddp"].row = SimpleNamespace(status="failed", final_train_loss=None)  # reported with its cell, not here
    by_label["ddp (torchrun)"].row.final_train_loss = 9.0
    problems = check_same_training(plan)
    assert len(problems) == 2 and all("scpl processes (torchrun) on 2 GPUs ends at loss 2.01" in p for p in problems)
