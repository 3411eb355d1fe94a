"""File input/output: volumes, Data Exchange, CXI ptychography scans, atomic writes and provenance.

``io`` knows no science.  Besides the readers and writers it holds the helpers every stage
that writes its own layout shares: atomic paths and directories, provenance, SHA-256 of
inputs, file attributes (``file_attributes``, ``set_h5_attrs``, ``plain_attrs``) and the
optional Zarr import (``require_zarr``, ``create_zarr``).
"""

from ._atomic import (array_sha256, atomic_directory, atomic_path, check_writable, file_sha256, jsonable,
                      provenance)
from ._cxi import CXIHeader, CXIScan, read_cxi, read_cxi_header, write_cxi
from ._dxchange import DataExchange, read_dxchange, write_dxchange
from ._errors import CorruptFileError
from ._h5 import GZIP_LEVEL, check_attrs, file_attributes, plain_attrs, set_h5_attrs
from ._volume import read_volume, split_dataset_path, volume_format, write_volume
from ._zarr import create_zarr, require_zarr

__all__ = ["CXIHeader", "CXIScan", "CorruptFileError", "DataExchange", "GZIP_LEVEL", "array_sha256", "atomic_directory", "atomic_path",
           "check_attrs", "check_writable", "create_zarr", "file_attributes", "file_sha256", "jsonable",
           "plain_attrs", "provenance", "read_cxi", "read_cxi_header", "read_dxchange", "read_volume",
           "require_zarr", "set_h5_attrs", "split_dataset_path", "volume_format", "write_cxi", "write_dxchange",
           "write_volume"]
