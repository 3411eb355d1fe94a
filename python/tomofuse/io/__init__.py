"""File input/output: atomic writes and provenance.  ``io`` knows no science."""

from ._atomic import array_sha256, atomic_path, check_writable, file_sha256, jsonable, provenance

__all__ = ["array_sha256", "atomic_path", "check_writable", "file_sha256", "jsonable", "provenance"]
