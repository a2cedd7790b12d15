"""A checkpoint that cannot be written for want of disk says so, in place of torch.save's riddle."""
import errno
import shutil
from collections import namedtuple

import pytest
import torch

import bench.cell.checkpoint as checkpoint

Usage = namedtuple("Usage", "total used free")


def _failing_save(obj, f, *args, **kwargs):
    with open(f, "wb") as out:
        out.write(b"partial")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 26561856 vs 26561748")


def test_a_full_disk_is_named_with_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 10 * 2**30, 3 * 2**20))
    store = checkpoint.RankCheckpoints(tmp_path, "cell")
    with pytest.raises(OSError) as caught:
        store.save_shard(0, 1, {"w": torch.zeros(2)}, [])
    assert caught.value.errno == errno.ENOSPC
    message = str(caught.value)
    assert "no space left" in message and "rank0-epoch1.pt" in message and "3 MiB free" in message
    assert "--results" in message
    assert list(store.folder.iterdir()) == []  # the partial temp file is gone


def test_a_failed_write_with_room_to_spare_keeps_its_own_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "save", _failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 * 2**30, 0, 10 * 2**30))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        checkpoint.RankCheckpoints(tmp_path, "cell").save_shard(0, 1, {"w": torch.zeros(2)}, [])
