"""The result store: concurrent appends lose nothing, attempts, compaction, old folders, clear errors."""
import os
import subprocess
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import run_matrix
from bench.run.retry import finished_cell_ids
from bench.store.__main__ import main as store_main
from bench.store.compact import compact
from bench.store.fragments import append_rows, list_fragments
from bench.store.layout import StoreError, check_results_dir, remove_stale_temps, writer_tag
from bench.store.read import read_history, read_results
from bench.store.row import ARROW_SCHEMA, SCHEMA_VERSION, ResultRow
from tests.conftest import ROOT, run_main


def _row(cell_id, status="ok", attempt=None, **extra):
    return ResultRow(cell_id=cell_id, grid="g", method="bp", model="vgg8", dataset="cifar10@synthetic",
                     data_kind="synthetic", batch_size=32, devices=1, trial=0, seed=0, status=status,
                     attempt=attempt, step_times_s=[0.1, 0.2], **extra)


WRITER = """
import sys
from pathlib import Path
from bench.store.fragments import append_rows
from bench.store.row import ResultRow
folder, who = Path(sys.argv[1]), sys.argv[2]
for i in range(50):
    append_rows(folder, [ResultRow(cell_id=f"{who}-{i}", grid="g", method="bp", model="m", dataset="d",
                                   data_kind="synthetic", batch_size=1, devices=1, trial=0, seed=i)])
"""


@pytest.mark.slow
def test_concurrent_appends_from_processes_and_a_compaction_lose_nothing(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"w{k}"], env=env) for k in range(4)]
    compactions = 0
    while any(w.poll() is None for w in writers):  # compacting all the while: it may delete only what it merged
        compactions += compact(tmp_path).merged_fragments > 0
    assert all(w.wait() == 0 for w in writers)
    assert len(read_results(tmp_path)) == 200 and len(read_history(tmp_path)) == 200
    compact(tmp_path)
    assert list_fragments(tmp_path) == []
    on_disk = pq.read_table(tmp_path / "results.parquet")  # what pandas/duckdb see: every row
    assert on_disk.num_rows == 200 and len(set(on_disk.column("cell_id").to_pylist())) == 200


def test_concurrent_appends_from_threads(tmp_path):
    def write(k):
        for i in range(25):
            append_rows(tmp_path, [_row(f"t{k}-{i}")])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(read_results(tmp_path)) == 100


def test_attempts_history_and_latest(tmp_path):
    append_rows(tmp_path, [_row("a", "timeout", attempt=1)])
    append_rows(tmp_path, [_row("a", "timeout", attempt=2)])
    append_rows(tmp_path, [_row("a", "ok", attempt=3), _row("b", "nan", attempt=1)])
    history = read_history(tmp_path)
    assert list(history["attempt"]) == [1, 2, 3, 1] and history["attempt_id"].is_unique
    latest = read_results(tmp_path).set_index("cell_id")
    assert list(read_results(tmp_path).columns) == ARROW_SCHEMA.names
    assert latest.loc["a", "status"] == "ok" and latest.loc["a", "attempt"] == 3 and len(latest) == 2
    assert finished_cell_ids(tmp_path) == {"a", "b"}
    assert finished_cell_ids(tmp_path, retry=("nan",)) == {"a"}
    compact(tmp_path)
    assert read_history(tmp_path)[["cell_id", "attempt"]].values.tolist() == history[["cell_id", "attempt"]].values.tolist()
    assert read_results(tmp_path).set_index("cell_id").loc["a", "status"] == "ok"


def test_a_merged_fragment_not_yet_deleted_is_read_once(tmp_path):
    append_rows(tmp_path, [_row("first")])  # the first append also creates results.parquet
    fragment = append_rows(tmp_path, [_row("a")])
    saved = fragment.read_bytes()
    compact(tmp_path)
    fragment.write_bytes(saved)  # as if the compaction died between its rename and its deletions
    assert len(read_history(tmp_path)) == 2


def test_old_folder_with_only_results_parquet(tmp_path):
    """Schema 1: no attempt columns, a retried timeout stored as a second row of the same cell."""
    old = [f for f in ARROW_SCHEMA if f.name not in ("attempt", "attempt_id", "finished_at")]
    rows = [{**_row("a", "timeout").to_dict(), "schema_version": 1}, {**_row("a").to_dict(), "schema_version": 1},
            {**_row("b").to_dict(), "schema_version": 1}]
    pq.write_table(pa.Table.from_pylist([{f.name: r[f.name] for f in old} for r in rows], schema=pa.schema(old)),
                   tmp_path / "results.parquet")
    history = read_history(tmp_path)
    assert history[["cell_id", "attempt", "status"]].values.tolist() == [["a", 1, "timeout"], ["a", 2, "ok"], ["b", 1, "ok"]]
    assert read_results(tmp_path).set_index("cell_id").loc["a", "status"] == "ok"
    append_rows(tmp_path, [_row("c", attempt=1)])
    compact(tmp_path)
    assert len(read_history(tmp_path)) == 4 and set(read_results(tmp_path)["cell_id"]) == {"a", "b", "c"}
    assert SCHEMA_VERSION == 2 and read_results(tmp_path).set_index("cell_id").loc["c", "schema_version"] == 2


@pytest.mark.parametrize("which", ["results", "fragment"])
def test_corrupt_file_is_a_one_line_error_naming_it(tmp_path, which, capsys):
    append_rows(tmp_path, [_row("a")])
    append_rows(tmp_path, [_row("b")])
    if which == "results":
        compact(tmp_path)
        bad = tmp_path / "results.parquet"
    else:
        bad = list_fragments(tmp_path)[0]
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(StoreError) as info:
        read_results(tmp_path)
    message = str(info.value)
    assert str(bad) in message and "move it out" in message and "\n" not in message
    cli = run_main(store_main, ["compact", str(tmp_path)], capsys)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and str(bad) in cli.stderr
    assert bad.exists()  # nothing deleted by a failed compaction


def test_compact_cli(tmp_path, capsys):
    append_rows(tmp_path, [_row("a")])
    assert (tmp_path / "results.parquet").exists() and list_fragments(tmp_path) == []  # a first append compacts
    append_rows(tmp_path, [_row("b")])
    append_rows(tmp_path, [_row("c")])
    assert len(list_fragments(tmp_path)) == 2  # later ones do not: O(1)
    cli = run_main(store_main, ["compact", str(tmp_path)], capsys)
    assert cli.returncode == 0 and "merged 2 fragments, 3 rows" in cli.stdout
    assert list_fragments(tmp_path) == [] and pq.read_table(tmp_path / "results.parquet").num_rows == 3


def test_results_dir_that_is_a_file_or_unwritable_is_refused(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        check_results_dir(afile)
    with pytest.raises(StoreError, match="not writable"):
        check_results_dir("/proc/scplbench-results")
    assert check_results_dir(tmp_path / "new").is_dir()
    refused = run_main(run_matrix.main, ["--grid", "smoke", "--results", "/proc/x", "--no-progress"], capsys)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "/proc/x" in refused.stderr


def test_stale_temps_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    (tmp_path / "rows").mkdir()
    host = writer_tag().rsplit("-", 1)[0]
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    stale = [tmp_path / f".results.parquet.{host}-{dead}.tmp", tmp_path / "rows" / f".x.parquet.{host}-{dead}.tmp",
             tmp_path / ".tmp" / f"{host}-{dead}"]
    live = [tmp_path / f".results.parquet.{writer_tag()}.tmp", tmp_path / ".tmp" / writer_tag()]
    for path in stale + live:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if path.parent.name == ".tmp" else path.write_bytes(b"")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in live) and not any(p.exists() for p in stale)
