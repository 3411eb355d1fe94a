"""The pipeline's config: one schema (every key's type, default, range and help), TOML in, resolved TOML out.

Every key of a config is declared once, in ``SCHEMA``; the loader refuses unknown keys (with a
"did you mean"), wrong types and values out of range, naming the key.  Paths are relative to the
config file.  ``template(name)`` renders a commented config from the same schema, so the
template, the checker and the docs cannot drift apart.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..segment import MASK_SMOOTHING, NECK_RATIO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Config", "ConfigError", "Key", "SCHEMA", "STAGES", "load_config", "template"]

#: The stages, in order.
STAGES = ("ptycho", "pxct", "txtm", "fsc", "register", "fuse", "segment", "particles", "coverage", "echem",
          "report")


class ConfigError(ValueError):
    """A bad config or input (the CLI exits with code 2); the message names the key or the file."""


@dataclass(frozen=True)
class Key:
    """One config key: ``kind`` is bool, int, float, str, path, glob, list[str] or list[int]."""

    kind: str
    default: Any
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[tuple] = None
    #: whether the key changes a stage's result (threads and the like do not).
    affects_result: bool = True


def _ring_methods():
    from ..tomo import RING_METHODS

    return ("none",) + tuple(RING_METHODS)


def _filters():
    from ..tomo import FILTERS

    return tuple(FILTERS)


#: section -> key -> Key.  Units are in the key's name (``_m``, ``_kev``, ``_px``, ``_deg``) or its help.
SCHEMA: dict[str, dict[str, Key]] = {
    "run": {
        "output": Key("path", "run", "run directory (one folder per stage, manifest.json, run.log)"),
        "threads": Key("int", 0, "threads per process or Dask worker (0 = the package default); results do "
                                 "not depend on it", minimum=0, affects_result=False),
        "modality": Key("str", "auto", "which modalities this run holds: auto (from the inputs given), both, "
                                       "pxct, txtm", choices=("auto", "both", "pxct", "txtm")),
    },
    "ptycho": {
        "scans": Key("glob", "", "CXI files of the ptychographic series, one per projection (glob pattern, "
                                 "sorted by name); empty = no ptychography"),
        "angles_file": Key("path", "", "text file of the rotation angles in degrees, one per scan in the order "
                                       "of the sorted scans (empty: the CXI attribute rotation_angle_deg)"),
        "probe_diameter_m": Key("float", 1.7e-7, "beam diameter at the sample of the initial probe, meters",
                                minimum=0.0),
        "dm_iterations": Key("int", 800, "difference-map iterations (paper: 800)", minimum=0),
        "ml_iterations": Key("int", 800, "maximum-likelihood iterations (paper: 800)", minimum=0),
        "probe_modes": Key("int", 1, "mutually incoherent probe modes", minimum=1, maximum=16),
        "holdout_share": Key("float", 0.025, "share of each scan's patterns held out of the engines: their "
                                             "likelihood stops ML and chooses the result (0 = none: every "
                                             "pattern used, every iteration run)", minimum=0.0, maximum=0.5),
        "checkpoint_every": Key("int", 50, "iterations between checkpoints of a projection", minimum=1,
                                affects_result=False),
    },
    "pxct": {
        "projections": Key("path", "", "enter here: HDF5 of phase projections (/phase (A, rows, cols) rad, "
                                       "/angles (A,) rad) instead of the ptychography stage"),
        "volume": Key("path", "", "enter here: an already reconstructed PXCT volume (HDF5, /volume, attribute "
                                  "voxel_size in m) instead of the ptycho and pxct stages"),
        "voxel_size_m": Key("float", 0.0, "PXCT voxel, meters (0 = from the input: the CXI geometry or the "
                                          "volume's voxel_size attribute)", minimum=0.0, maximum=1e-4),
        "illumination_threshold": Key("float", 0.5, "crop each phase projection to where the probe's summed "
                                                    "intensity exceeds this fraction of its maximum",
                                      minimum=0.0, maximum=1.0),
        "air_columns": Key("int", 4, "columns of air at each side used to remove the phase ramp", minimum=1),
        "align": Key("bool", True, "align the projections (tomographic consistency) before the FBP"),
        "filter": Key("str", "hann", "FBP filter window", choices=("ramp", "shepp-logan", "cosine", "hamming",
                                                                    "hann")),
    },
    "txtm": {
        "scan": Key("path", "", "Data Exchange HDF5 of the TXTM scan (/exchange/data, data_white, data_dark, "
                                "theta); empty = no TXTM"),
        "volume": Key("path", "", "enter here: an already reconstructed TXTM volume (HDF5, /volume, attribute "
                                  "voxel_size in m)"),
        "pixel_size_m": Key("float", 0.0, "TXTM pixel at the sample, meters (0 = the file's pixel_size_m "
                                          "attribute)", minimum=0.0, maximum=1e-4),
        "energy_kev": Key("float", 8.4, "photon energy, keV (paper: 8.4)", minimum=1.0, maximum=100.0),
        "distance_m": Key("float", 5e-3, "propagation distance of the Paganin filter, meters", minimum=0.0,
                          maximum=10.0),
        "delta_beta": Key("float", 0.028, "delta/beta of the Paganin filter (paper: 0.028; 0 = no filter, "
                                          "-log only)", minimum=0.0),
        "rings": Key("str", "none", "ring-artifact removal method", choices=("none", "combined", "detect", "sorting")),
        "center_px": Key("float", -1.0, "rotation axis, detector column (negative = find it automatically)"),
        "filter": Key("str", "hann", "FBP filter window", choices=("ramp", "shepp-logan", "cosine", "hamming",
                                                                    "hann")),
    },
    "fsc": {
        "enabled": Key("bool", True, "Fourier shell correlation of two half-data reconstructions per modality"),
        "threshold": Key("str", "half-bit", "resolution criterion", choices=("half-bit", "one-bit")),
    },
    "register": {
        "registration": Key("path", "", "enter here: a registration (JSON of Registration.save)"),
        "initial": Key("str", "auto", "coarse alignment: auto (rotation search) or center",
                       choices=("auto", "center")),
        "stages": Key("list[str]", ["rigid", "bspline"], "registration stages, in order",
                      choices=("rigid", "bspline")),
        "seed": Key("int", 0, "seed of the sampling of the metric", minimum=0),
    },
    "fuse": {
        "fused": Key("path", "", "enter here: a fused (2, z, y, x) volume (HDF5, /volume, attribute "
                                 "voxel_size)"),
    },
    "segment": {
        "labels": Key("path", "", "enter here: a segmentation (HDF5 of tomofuse segment: /labels, /valid)"),
        "cycled": Key("bool", False, "the electrode was cycled: look for an SEI on the silicon"),
        "channels": Key("str", "both", "channels used", choices=("both", "pxct", "txtm")),
        "block_voxels": Key("int", 0, "0: segment the whole volume at once; n > 0: fit the model once, then "
                                      "segment blocks of n^3 voxels (with a halo) -- on the Dask workers when "
                                      "there are any (volumes larger than memory)", minimum=0),
        "use_fsc_resolution": Key("bool", True, "give the segmentation the FSC resolutions of both volumes "
                                                "(else it estimates them; also a volume whose FSC did not "
                                                "cross its threshold)"),
    },
    "particles": {
        "particles": Key("path", "", "enter here: particle ids (HDF5, /particles int32, 0 = none)"),
        "min_volume_m3": Key("float", 0.0, "smallest particle kept, cubic meters (0 = the default of "
                                           "label_particles)", minimum=0.0),
        "split": Key("bool", True, "split touching particles (watershed)"),
        "neck_ratio": Key("float", NECK_RATIO, "neck-to-radius ratio below which two touching particles are split",
                          minimum=0.0, maximum=1.0),
        "mask_smoothing": Key("float", MASK_SMOOTHING, "voxels: the split's distance map ignores holes (specks of "
                                                       "other phases inside particles) found with this smoothing "
                                                       "(0 = the mask as labeled)", minimum=0.0, maximum=16.0),
    },
    "coverage": {
        "sigma": Key("float", 2.0, "smoothing of the surface normals, voxels", minimum=0.0, maximum=10.0),
        "thickness": Key("bool", True, "also measure the SEI thickness per particle"),
    },
    "echem": {
        "enabled": Key("bool", True, "simulate the electrochemistry of selected particles"),
        "select": Key("str", "largest", "which particles: largest (the `count` largest inner ones), all, ids",
                      choices=("largest", "all", "ids")),
        "count": Key("int", 1, "how many particles with select = largest", minimum=1),
        "ids": Key("list[int]", [], "particle ids with select = ids"),
        "experiments": Key("list[str]", ["soc_distribution"], "the paper's numerical experiments to run",
                           choices=("soc_distribution", "electronic_vs_ionic", "sei_effect")),
        "margin_voxels": Key("int", 3, "voxels of surroundings cut out with each particle", minimum=1),
        "parameters": Key("str", "paper", "parameter set: paper (SiliconParameters.paper(), fitted to the paper's "
                                          "Fig. 3 numbers inside literature ranges) or literature "
                                          "(SiliconParameters(), the literature defaults)",
                          choices=("paper", "literature")),
        "limits": Key("str", "separate", "electronic vs ionic limits: separate (each path with the other ideal, "
                                         "the paper's Fig. 3f) or coupled (both on the same pseudo-steady states)",
                      choices=("separate", "coupled")),
    },
    "report": {
        "title": Key("str", "tomofuse run", "title of report.html"),
    },
}


def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _kind_name(kind: str) -> str:
    return {"glob": "str (glob pattern)", "path": "str (path)"}.get(kind, kind)


def _check_value(section: str, name: str, key: Key, value: Any) -> Any:
    where = f"{section}.{name}"
    kind = key.kind

    def bad_type():
        return ConfigError(f"{where}: expected {_kind_name(kind)}, got {type(value).__name__} {value!r}")

    if kind == "bool":
        if not isinstance(value, bool):
            raise bad_type()
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_type()
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_type()
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: must be finite, got {value!r}")
    elif kind in ("str", "path", "glob"):
        if not isinstance(value, str):
            raise bad_type()
    elif kind in ("list[str]", "list[int]"):
        item = str if kind == "list[str]" else int
        if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise bad_type()
        if key.choices is not None:
            for v in value:
                if v not in key.choices:
                    raise ConfigError(f"{where}: {v!r} is not one of {list(key.choices)}"
                                      f"{_did_you_mean(str(v), key.choices)}")
        return list(value)
    if key.choices is not None and value not in key.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {list(key.choices)}{_did_you_mean(str(value), key.choices)}")
    if key.minimum is not None and value < key.minimum:
        raise ConfigError(f"{where}: must be >= {key.minimum:g}, got {value!r}")
    if key.maximum is not None and value > key.maximum:
        raise ConfigError(f"{where}: must be <= {key.maximum:g}, got {value!r}")
    return value


@dataclass
class Config:
    """A validated config: every key of ``SCHEMA`` with its value (defaults filled in).

    Attributes
    ----------
    values : dict
        ``section -> key -> value``; paths are absolute (resolved against ``base``), empty = not given.
    base : Path
        Directory of the config file (relative paths start there).
    source : Path or None
        The config file.
    """

    values: dict
    base: Path
    source: Optional[Path] = None
    given: dict = field(default_factory=dict)

    def __getitem__(self, section: str) -> dict:
        return self.values[section]

    def path(self, section: str, name: str) -> Optional[Path]:
        """The path of a path key, or None when empty."""
        v = self.values[section][name]
        return Path(v) if v else None

    def section_for_hash(self, section: str) -> dict:
        """The values of one section that change its result (for the parameter hash)."""
        return {k: self.values[section][k] for k, key in SCHEMA[section].items() if key.affects_result}

    def to_toml(self) -> str:
        """The resolved config (every key, the values used) as TOML."""
        lines = ["# tomofuse resolved config: every key with the value used (defaults filled in)",
                 f"# source: {self.source}", ""]
        for section, keys in SCHEMA.items():
            lines.append(f"[{section}]")
            for name in keys:
                lines.append(f"{name} = {_toml_value(self.values[section][name])}")
            lines.append("")
        return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def load_config(source: str | os.PathLike | Mapping, *, base: Optional[str | os.PathLike] = None) -> Config:
    """Read and validate a config.

    Parameters
    ----------
    source : str, path-like or mapping
        A TOML file, or the parsed mapping itself (then ``base`` is the directory relative
        paths start from; default the working directory).
    base : str or path-like, optional
        Directory of relative paths for a mapping.

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        Unreadable file, TOML syntax error, unknown section or key (with the closest known
        one), wrong type or value out of range; the message names the key.
    """
    path = None
    if isinstance(source, Mapping):
        raw = dict(source)
        root = Path(base if base is not None else os.getcwd()).expanduser().absolute()
    else:
        path = Path(source).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(f"{source}: no such config file")
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
        root = path.parent
    values: dict = {}
    given: dict = {}
    for section, content in raw.items():
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}]{_did_you_mean(section, SCHEMA)}")
        if not isinstance(content, dict):
            raise ConfigError(f"{section}: expected a table [{section}], got {type(content).__name__}")
        for name in content:
            if name not in SCHEMA[section]:
                known = SCHEMA[section]
                hint = _did_you_mean(name, known)
                if not hint:  # maybe the key of another section
                    for other, keys in SCHEMA.items():
                        if name in keys:
                            hint = f"; {name!r} belongs to [{other}]"
                            break
                raise ConfigError(f"{section}.{name}: unknown key{hint}")
    for section, keys in SCHEMA.items():
        content = raw.get(section, {})
        values[section] = {}
        given[section] = {}
        for name, key in keys.items():
            if name in content:
                v = _check_value(section, name, key, content[name])
                given[section][name] = True
            else:
                v = list(key.default) if isinstance(key.default, list) else key.default
            if key.kind in ("path", "glob") and v:
                v = str(root / Path(v).expanduser()) if not Path(v).expanduser().is_absolute() \
                    else str(Path(v).expanduser())
            values[section][name] = v
    return Config(values=values, base=root, source=path, given=given)


# ------------------------------------------------------------------------------------------ templates

_TEMPLATES = {
    "pxct-txtm": {
        ("run", "output"): "run",
        ("ptycho", "scans"): "ptycho/scan_*.cxi",
        ("ptycho", "angles_file"): "ptycho/angles_deg.txt",
        ("txtm", "scan"): "txtm/scan.h5",
    },
    "demo": {
        ("run", "output"): "run",
        ("ptycho", "scans"): "raw/ptycho/proj_*.cxi",
        ("ptycho", "angles_file"): "raw/ptycho/angles_deg.txt",
        ("ptycho", "dm_iterations"): 30,
        ("ptycho", "ml_iterations"): 20,
        ("txtm", "scan"): "raw/txtm.h5",
    },
}

TEMPLATES = tuple(_TEMPLATES)


def template(name: str, *, values: Optional[Mapping[tuple, Any]] = None) -> str:
    """A commented config: every key of ``SCHEMA`` with its help, range and default.

    Parameters
    ----------
    name : {"pxct-txtm", "demo"}
        ``pxct-txtm``: a study of real data (edit the paths); ``demo``: the files of
        :func:`tomofuse.pipeline.simulate_raw`.
    values : mapping, optional
        ``(section, key) -> value`` set in the template (others are commented defaults).

    Returns
    -------
    str
        TOML text (it loads with :func:`load_config`).
    """
    if name not in _TEMPLATES:
        raise ValueError(f"template must be one of {list(_TEMPLATES)}, got {name!r}{_did_you_mean(name, _TEMPLATES)}")
    chosen = dict(_TEMPLATES[name])
    chosen.update(values or {})
    out = [f"# tomofuse pipeline config (template {name!r}); `tomofuse check` validates it, `tomofuse run` runs it.",
           "# Paths are relative to this file. Keys left commented take the default shown.", ""]
    for section, keys in SCHEMA.items():
        out.append(f"[{section}]")
        for key_name, key in keys.items():
            rng = []
            if key.choices:
                rng.append("one of " + ", ".join(map(str, key.choices)))
            if key.minimum is not None:
                rng.append(f">= {key.minimum:g}")
            if key.maximum is not None:
                rng.append(f"<= {key.maximum:g}")
            out.append(f"# {key.help} [{_kind_name(key.kind)}{'; ' + '; '.join(rng) if rng else ''}]")
            if (section, key_name) in chosen:
                v = chosen[(section, key_name)]
                _check_value(section, key_name, key, v)
                out.append(f"{key_name} = {_toml_value(v)}")
            else:
                out.append(f"# {key_name} = {_toml_value(key.default)}")
        out.append("")
    return "\n".join(out)
