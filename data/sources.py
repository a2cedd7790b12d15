"""Where real dataset files live, where to get them, and who reads them.

Why one table: the error for a missing file, the cache fingerprint and
docs/DATA.md all need the same facts (the exact relative paths and the
official URL); keeping them next to the reader registration means adding a
dataset touches one module. Nothing here downloads: users fetch the files.

Data root: the `root` argument, else `$SCPLBENCH_DATA`, else `./datasets`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, TypeVar, Union

from .errors import DatasetFileError, DatasetFormatError, UnknownDatasetError

__all__ = ["DATA_ROOT_ENV", "DEFAULT_DATA_ROOT", "Source", "data_root", "register_reader", "source_for",
           "list_sources", "require_files", "missing_file_error", "bad_file"]

DATA_ROOT_ENV = "SCPLBENCH_DATA"
DEFAULT_DATA_ROOT = "./datasets"

Reader = TypeVar("Reader", bound=Callable)


@dataclass(frozen=True)
class Source:
    """The files of one real dataset under the data root and the function that reads them.

    `files` must all exist before `read(root)` is called (directories end in
    "/"); `cache` marks readers slow enough to keep their tensors under
    `<root>/.cache/`.
    """

    name: str
    files: tuple[str, ...]
    url: str
    how: str
    read: Callable
    cache: bool = False


_SOURCES: dict[str, Source] = {}


def data_root(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The data root: `root`, else `$SCPLBENCH_DATA`, else `./datasets`."""
    return Path(root if root is not None else os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)


def register_reader(name: str, files: tuple[str, ...], url: str, how: str, cache: bool = False
                    ) -> Callable[[Reader], Reader]:
    """Decorator: `read(root: Path)` reads dataset `name` from `files` under the root."""

    def decorate(read: Reader) -> Reader:
        if name in _SOURCES:
            raise ValueError(f"reader for {name!r} registered twice")
        _SOURCES[name] = Source(name, tuple(files), url, how, read, cache)
        return read

    return decorate


def _readers() -> dict[str, Source]:
    """Every registered reader; the reader modules register on import, which needs torch, so here."""
    from . import text_files, vision_files  # noqa: F401

    return _SOURCES


def source_for(name: str) -> Source:
    try:
        return _readers()[name]
    except KeyError:
        raise UnknownDatasetError(f"no reader for real dataset {name!r}; readers exist for {sorted(_SOURCES)}") from None


def list_sources() -> list[Source]:
    return [_readers()[n] for n in sorted(_readers())]


def missing_file_error(source: Source, path: Path, problem: str = "missing") -> DatasetFileError:
    return DatasetFileError(
        f"{source.name}: {problem}: {path} ; get it from {source.url} ({source.how}); "
        f"data root = root argument, else ${DATA_ROOT_ENV}, else {DEFAULT_DATA_ROOT} (see docs/DATA.md)"
    )


def require_files(source: Source, root: Path) -> list[Path]:
    """The absolute paths of `source.files`; raise `DatasetFileError` naming the first one missing."""
    paths = []
    for relative in source.files:
        path = root / relative
        exists = path.is_dir() if relative.endswith("/") else path.is_file()
        if not exists:
            raise missing_file_error(source, path)
        paths.append(path)
    return paths


def bad_file(name: str, path: Path, problem: str) -> DatasetFormatError:
    """A `DatasetFormatError` for dataset `name`: the path, what is wrong, the expected format and URL."""
    source = _readers().get(name)
    where = f" ; expected {source.how}, from {source.url}" if source else ""
    return DatasetFormatError(f"{name}: malformed file {path}: {problem}{where}")
