"""Atomic file writing and provenance attributes (no science here)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

__all__ = ["atomic_directory", "atomic_path", "check_writable", "provenance", "array_sha256", "file_sha256",
           "jsonable"]


def check_writable(path: str | os.PathLike, *, argument: str = "path") -> Path:
    """Fail early, with ``OSError`` naming ``argument``, if ``path`` cannot be written.

    Parameters
    ----------
    path : path-like
        Output file.
    argument : str
        Name of the argument for the message.

    Returns
    -------
    Path
        ``path`` as an absolute ``Path``.
    """
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        raise IsADirectoryError(f"{argument}: {str(p)!r} is a directory, expected a file path")
    return _in_writable_directory(p, argument)


def _in_writable_directory(p: Path, argument: str) -> Path:
    """``p`` (absolute) if its parent directory exists and is writable, else ``OSError`` naming ``argument``."""
    parent = p.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"{argument}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{argument}: directory {str(parent)!r} is not writable")
    return p


def _temporary_name(final: Path, tag: str = "part") -> Path:
    # A fresh name that the writer creates itself, so the file gets the
    # process's usual permissions (umask), unlike a mkstemp file (0600).
    return final.with_name(f".{final.name}.{secrets.token_hex(8)}.{tag}")


def _refuse_existing(final: Path, argument: str) -> None:
    if os.path.lexists(final):
        raise FileExistsError(f"{argument}: {str(final)!r} exists (pass overwrite=True to replace it)")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, argument: str = "path", overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    If the body raises (or is interrupted), the temporary file is removed and
    ``path`` is left untouched, so no partial output ever carries the final name.

    Parameters
    ----------
    path : path-like
        Final file name.
    argument : str
        Name of the argument for error messages.
    overwrite : bool
        Replace an existing ``path`` (the default, atomically by ``os.replace``).
        With False an existing ``path`` raises ``FileExistsError`` before
        anything is written, and the final rename is a hard link that fails
        rather than replace a file created meanwhile.

    Raises
    ------
    FileExistsError
        If ``overwrite`` is False and ``path`` exists.
    """
    final = check_writable(path, argument=argument)
    if not overwrite:
        _refuse_existing(final, argument)
    tmp_path = _temporary_name(final)
    try:
        yield tmp_path
        if overwrite:
            os.replace(tmp_path, final)
        else:
            try:
                os.link(tmp_path, final)  # atomic, never replaces
            except FileExistsError:
                raise FileExistsError(f"{argument}: {str(final)!r} was created while writing") from None
            except OSError:  # a file system without hard links
                _refuse_existing(final, argument)
                os.replace(tmp_path, final)
            else:
                tmp_path.unlink()
    except BaseException:
        _remove(tmp_path)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, argument: str = "path", overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory name next to ``path``; rename it to ``path`` on success.

    The directory analog of ``atomic_path`` for directory stores (Zarr): the
    body creates and fills the yielded directory; only a complete directory
    ever carries the final name, and on error (or interruption) the temporary
    directory is removed.  Replacing an existing ``path`` takes two renames
    (old out of the way, new in), so for a moment ``path`` does not exist, but
    it never names a partial result.

    Parameters
    ----------
    path : path-like
        Final directory name.
    argument : str
        Name of the argument for error messages.
    overwrite : bool
        Replace an existing ``path`` (file or directory); otherwise an
        existing ``path`` raises ``FileExistsError`` before anything is written.

    Raises
    ------
    FileExistsError
        If ``overwrite`` is False and ``path`` exists.
    """
    final = _in_writable_directory(Path(path).expanduser().absolute(), argument)
    if not overwrite:
        _refuse_existing(final, argument)
    tmp_path = _temporary_name(final)
    try:
        yield tmp_path
        if not tmp_path.is_dir():
            raise FileNotFoundError(f"{argument}: the writer created no directory {str(tmp_path)!r}")
        if os.path.lexists(final):
            if not overwrite:
                raise FileExistsError(f"{argument}: {str(final)!r} was created while writing")
            old = _temporary_name(final, "old")
            os.rename(final, old)
            try:
                os.rename(tmp_path, final)
            except BaseException:
                os.rename(old, final)
                raise
            _remove(old)
        else:
            os.rename(tmp_path, final)
    except BaseException:
        _remove(tmp_path)
        raise


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and C-ordered bytes (hex)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(str(a.dtype.str).encode())
    h.update(str(a.shape).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays, tuples, paths and dataclasses (options objects) turned into JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def provenance(
    *, parameters: Mapping[str, Any] | None = None, inputs: Mapping[str, str] | None = None, program: str
) -> dict[str, str]:
    """Provenance attributes for an output file.

    Parameters
    ----------
    parameters : mapping, optional
        The parameters that produced the output (JSON-serializable after
        converting NumPy scalars/arrays).
    inputs : mapping, optional
        Input name -> SHA-256 hex digest.
    program : str
        What wrote the file, e.g. ``"tomofuse.phantom.electrode"``.

    Returns
    -------
    dict of str
        ``tomofuse_version``, ``program``, ``created_utc``, ``parameters``
        (JSON), ``inputs`` (JSON), ``python``, ``numpy``, ``fft`` (the FFT library of
        the compiled core: results differ between libraries in the last bits).
    """
    from .. import __version__, _core

    return {
        "tomofuse_version": __version__,
        "program": program,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": json.dumps(jsonable(parameters or {}), sort_keys=True),
        "inputs": json.dumps(dict(inputs or {}), sort_keys=True),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fft": _core.fft_backend(),
    }
