"""File input/output: volumes, Data Exchange, CXI ptychography scans, atomic writes and provenance.

``io`` knows no science.
"""

from ._atomic import (array_sha256, atomic_directory, atomic_path, check_writable, file_sha256, jsonable,
                      provenance)
from ._cxi import CXIScan, read_cxi, write_cxi
from ._dxchange import DataExchange, read_dxchange, write_dxchange
from ._volume import read_volume, split_dataset_path, volume_format, write_volume

__all__ = ["CXIScan", "DataExchange", "array_sha256", "atomic_directory", "atomic_path", "check_writable",
           "file_sha256", "jsonable", "provenance", "read_cxi", "read_dxchange", "read_volume", "split_dataset_path",
           "volume_format", "write_cxi", "write_dxchange", "write_volume"]
