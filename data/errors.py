"""The two ways asking for data can fail, each with a message that says what to do.

Why separate classes: the grid validator turns an unknown name into a grid error
before anything runs, while a missing file is a user's download step. Neither
ever falls back to synthetic data: a benchmark row must say what it trained on.
"""
from __future__ import annotations

__all__ = ["UnknownDatasetError", "DatasetFileError", "DatasetFormatError"]


class UnknownDatasetError(ValueError):
    """A dataset name that is not registered; the message lists the valid names."""


class DatasetFileError(FileNotFoundError):
    """A file of a real dataset is missing: the message names the exact path and the URL."""


class DatasetFormatError(DatasetFileError):
    """A file exists but is not in the expected format (wrong columns, labels, sizes)."""
