"""One error for files that cannot be read: every reader names the file and the problem.

The libraries below the readers (h5py, tifffile, zarr, numpy) report corrupt or truncated files
in their own words and types -- often without the file's name, sometimes as a RuntimeError or a
KeyError. :func:`reading` turns any such failure into :class:`CorruptFileError` (an ``OSError``)
naming the file, what was being read and the library's message; errors the readers raise
themselves (``ValueError``/``OSError``/``KeyError`` that already name the file, ``TypeError`` for
bad arguments) pass through unchanged.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, TypeVar

__all__ = ["CorruptFileError", "reading"]

F = TypeVar("F", bound=Callable)


class CorruptFileError(OSError):
    """A file is truncated, corrupt, or not in the format its name promises."""


def _name(spec) -> str:
    text = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else str(spec)
    return text


def reading(what: str) -> Callable[[F], F]:
    """Decorate a reader whose first argument is the file (or ``file:dataset`` spec)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def reader(spec, *args, **kwargs):
            try:
                return fn(spec, *args, **kwargs)
            except (MemoryError, KeyboardInterrupt, TypeError):
                raise   # TypeError: the readers' own argument checks
            except (ValueError, OSError, KeyError) as e:
                if Path(_name(spec).split(":")[0]).name in str(e) or _name(spec) in str(e):
                    raise   # the reader's own message, naming the file
                raise CorruptFileError(f"{_name(spec)}: cannot read {what}: {e}") from e
            except Exception as e:  # noqa: BLE001 -- h5py RuntimeError, KeyError, tifffile/zarr errors
                raise CorruptFileError(f"{_name(spec)}: cannot read {what} (corrupt or truncated file?): "
                                       f"{type(e).__name__}: {e}") from e

        return reader  # type: ignore[return-value]

    return wrap
