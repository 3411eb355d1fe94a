"""File input/output: atomic writes and provenance.  ``io`` knows no science."""

from ._atomic import array_sha256, atomic_path, check_writable, file_sha256, jsonable, provenance
from ._volume import read_volume, split_dataset_path

__all__ = ["array_sha256", "atomic_path", "check_writable", "file_sha256", "jsonable", "provenance", "read_volume",
           "split_dataset_path"]
