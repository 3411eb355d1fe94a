"""File attributes: the user's checked attributes plus provenance, HDF5 attribute writing, plain values back.

Shared by every writer of ``tomofuse.io`` and by the stages that write their own HDF5 or
Zarr layouts (ptychography checkpoints and series stacks, the distributed FBP), through the
public names re-exported from ``tomofuse.io``.  No science here.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import numpy as np

from ._atomic import provenance

__all__ = ["GZIP_LEVEL", "check_attrs", "file_attributes", "plain_attrs", "set_h5_attrs"]

logger = logging.getLogger(__name__)

#: gzip level of HDF5 chunks (1: most of gzip's gain on detector data at a fraction of its time).
GZIP_LEVEL = 1


def check_attrs(attrs: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """User attributes as JSON-compatible values every format can store.

    Parameters
    ----------
    attrs : mapping of str to values, or None
        str, bool, int, float, or 1-D sequences of one of them.

    Returns
    -------
    dict
        Plain Python values (NumPy scalars and 1-D arrays converted).

    Raises
    ------
    TypeError
        For a non-mapping, a non-str key, or a value no format can store.
    """
    if attrs is None:
        return {}
    if not isinstance(attrs, Mapping):
        raise TypeError(f"attrs must be a mapping of str to values, got {type(attrs).__name__}")
    out = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"attrs: keys must be non-empty str, got {key!r}")
        out[key] = _check_attr_value(key, value)
    return out


def _check_attr_value(key: str, value: Any) -> Any:
    def scalar(v):
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (str, bool, int, float)):
            return v
        return None

    v = scalar(value)
    if v is not None:
        return v
    if isinstance(value, (list, tuple, np.ndarray)):
        if isinstance(value, np.ndarray) and value.ndim != 1:
            raise TypeError(f"attrs[{key!r}]: arrays must be 1-D, got shape {value.shape}")
        items = value.tolist() if isinstance(value, np.ndarray) else list(value)
        conv = [scalar(x) for x in items]
        if any(c is None for c in conv):
            raise TypeError(f"attrs[{key!r}]: sequence items must be str or numbers, got {value!r}")
        kinds = {str if isinstance(c, str) else bool if isinstance(c, bool) else float for c in conv}
        if len(kinds) > 1:
            raise TypeError(f"attrs[{key!r}]: a sequence must hold only str, only bool or only numbers, got {value!r}")
        return conv
    raise TypeError(f"attrs[{key!r}]: values must be str, bool, int, float or a 1-D sequence of them "
                    f"(encode mappings with json.dumps), got {type(value).__name__}")


def file_attributes(attrs: Optional[Mapping[str, Any]], *, parameters: Optional[Mapping[str, Any]] = None,
                    inputs: Optional[Mapping[str, str]] = None, program: str) -> dict[str, Any]:
    """The attributes of a new file: the user's ``attrs`` (checked) and its ``provenance`` (whose keys win).

    Parameters
    ----------
    attrs : mapping, optional
        Extra attributes (see ``check_attrs``).
    parameters, inputs, program
        Passed to ``tomofuse.io.provenance``.

    Returns
    -------
    dict
    """
    user = check_attrs(attrs)
    prov = provenance(parameters=parameters, inputs=inputs, program=program)
    replaced = sorted(set(user) & set(prov))
    if replaced:
        logger.debug("attrs %s replaced by this file's provenance", replaced)
    return {**user, **prov}


def plain_attrs(value: Any) -> Any:
    """An attribute value (or a mapping of them) as plain Python: str, bool, int, float, lists, dicts.

    Bytes are decoded as UTF-8, NumPy scalars and arrays become Python numbers and lists.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [plain_attrs(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return plain_attrs(value.item())
    if isinstance(value, (list, tuple)):
        return [plain_attrs(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain_attrs(v) for k, v in value.items()}
    return value


def set_h5_attrs(obj, attrs: Mapping[str, Any]) -> None:
    """Set ``attrs`` on an h5py file, group or dataset (lists of str as variable-length string arrays).

    Parameters
    ----------
    obj : h5py.File, h5py.Group or h5py.Dataset
    attrs : mapping
        Values as ``check_attrs`` or ``provenance`` return them.
    """
    import h5py

    for key, value in attrs.items():
        if isinstance(value, list) and value and isinstance(value[0], str):
            obj.attrs[key] = np.array(value, dtype=h5py.string_dtype())
        elif isinstance(value, list) and not value:
            obj.attrs[key] = np.zeros(0)
        else:
            obj.attrs[key] = value
