"""``tomofuse check``: the config and its inputs validated, each stage's peak memory estimated, nothing run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ._config import Config, ConfigError, load_config
from ._stages import plan, scan_files

__all__ = ["CheckReport", "check"]

#: relative tolerance of voxel sizes that must agree
_VOXEL_RTOL = 1e-3


@dataclass
class CheckReport:
    """What :func:`check` found.

    Attributes
    ----------
    plan : dict
        ``stage -> "run"`` or why it is not part of the run.
    memory : dict
        ``stage -> estimated peak bytes`` of the stages that run.
    available : int or None
        Memory available (bytes): ``max_memory`` or the machine's.
    notes : list of str
        Facts found (sizes, geometry).
    """

    plan: dict
    memory: dict = field(default_factory=dict)
    available: Optional[int] = None
    notes: list = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.available is None or all(v <= self.available for v in self.memory.values())


def _h5_open(path: Path, key: str):
    import h5py

    if not path.is_file():
        raise ConfigError(f"{key}: no such file {str(path)!r}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ConfigError(f"{key}: {str(path)!r} is not a readable HDF5 file (truncated or corrupt?): {exc}") from None


def _volume_info(spec: str, key: str, default: str) -> tuple[tuple, dict]:
    """Shape and attributes of a volume given as ``file.h5[:/dataset]`` (HDF5 only is inspected)."""
    from ..io import split_dataset_path

    path, name = split_dataset_path(spec)
    if path.suffix.lower() not in (".h5", ".hdf5", ".hdf", ".nxs", ".cxi"):
        if not path.exists():
            raise ConfigError(f"{key}: no such file {str(path)!r}")
        from ..io import read_volume

        try:
            v, attrs = read_volume(spec, lazy=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{key}: cannot read {str(path)!r}: {exc}") from None
        return tuple(v.shape), dict(attrs)
    with _h5_open(path, key) as f:
        ds = name or default
        if ds not in f:
            found = []
            f.visititems(lambda n, o: found.append("/" + n) if hasattr(o, "shape") else None)
            raise ConfigError(f"{key}: {str(path)!r} has no dataset {ds!r} (it has {', '.join(found[:8]) or 'none'}); "
                              f"name one as file.h5:/dataset")
        d = f[ds]
        try:
            d[(0,) * d.ndim] if d.size else None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{key}: {str(path)!r}:{ds} cannot be read (truncated or corrupt?): {exc}") from None
        attrs = {**dict(f.attrs), **dict(d.attrs)}
        return tuple(d.shape), attrs


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _VOXEL_RTOL * max(abs(a), abs(b))


def _check_output(run_dir: Path, key: str) -> None:
    """The run directory exists as a writable directory or can be created (nothing is created here)."""
    p = run_dir
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"{key}: cannot create {str(run_dir)!r}: {str(p)!r} is not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot write to {str(run_dir)!r}: {str(p)!r} is not writable")


def check(config: str | os.PathLike | Config, *, max_memory: Optional[float] = None,
          output: Optional[str | os.PathLike] = None) -> CheckReport:
    """Validate a config and its inputs and estimate every stage's peak memory, without running anything.

    Checks: the config (schema), that every input file exists and is readable HDF5 with the
    datasets expected (CXI headers of every scan, Data Exchange data/flat/dark/theta shapes,
    entry volumes), one angle per scan, voxel sizes consistent across entries, photon
    energies plausible (1-100 keV).

    Parameters
    ----------
    config : str, path-like or Config
    max_memory : float, optional
        Memory budget, bytes (default: what the machine has available).
    output : str or path-like, optional
        Run directory (default: the config's ``run.output``); it must be creatable and writable.

    Returns
    -------
    CheckReport

    Raises
    ------
    ConfigError
        The first problem found, naming the key or the file.
    """
    from .._memory import available_memory

    cfg = config if isinstance(config, Config) else load_config(config)
    p = plan(cfg)
    rep = CheckReport(plan=p)
    _check_output(Path(output).expanduser().absolute() if output is not None else Path(cfg["run"]["output"]),
                  "run.output" if output is None else "--output")
    voxel_pxct = cfg["pxct"]["voxel_size_m"] or None
    pxct_shape = None
    txtm_shape = None
    # -- ptychography
    if p["ptycho"] == "run":
        from ..io import read_cxi_header

        scans = scan_files(cfg)
        if not scans:
            raise ConfigError(f"ptycho.scans: no file matches {cfg['ptycho']['scans']!r}")
        n = None
        k_max = 0
        for s in scans:
            try:
                h = read_cxi_header(s)
            except (OSError, KeyError, ValueError) as exc:
                text = str(exc.args[0]) if exc.args else str(exc)
                raise ConfigError(f"ptycho.scans: {text if str(s) in text else f'{str(s)!r}: {text}'}") from None
            if not 1.0 <= h.energy_kev <= 100.0:
                raise ConfigError(f"ptycho.scans: {str(s)!r}: photon energy {h.energy_kev:g} keV is implausible")
            if n is None:
                n, first = h.pattern_shape, h
            elif h.pattern_shape != n:
                raise ConfigError(f"ptycho.scans: {str(s)!r} has {h.pattern_shape} patterns, the first scan {n}")
            k_max = max(k_max, h.n_patterns)
        from ._stages import _angles_deg, ptycho_geometry

        _angles_deg(cfg, scans)
        geo = ptycho_geometry(cfg)
        if voxel_pxct and not _same(voxel_pxct, geo["pixel_m"]):
            raise ConfigError(f"pxct.voxel_size_m: {voxel_pxct:g} m differs from the object pixel the CXI geometry "
                              f"gives ({geo['pixel_m']:g} m); leave it 0 or correct it")
        voxel_pxct = voxel_pxct or geo["pixel_m"]
        rep.notes.append(f"ptycho: {len(scans)} scans, up to {k_max} patterns of {n[0]}x{n[1]}, object pixel "
                         f"{geo['pixel_m'] * 1e9:.3g} nm, {first.energy_kev:g} keV")
        # per projection (one per worker or in process): patterns float32 + exit waves complex64 x ~4
        rep.memory["ptycho"] = k_max * n[0] * n[1] * (4 + 8 * 4) + 64 * 2 ** 20
        side = int(np.sqrt(k_max)) * n[0] // 2 + n[0]  # rough object side
        pxct_shape = (side, side, side)
    if cfg["pxct"]["projections"]:
        shape, attrs = _volume_info(cfg["pxct"]["projections"], "pxct.projections", "phase")
        _volume_info(cfg["pxct"]["projections"].split(":")[0] + ":/angles", "pxct.projections", "angles")
        pxct_shape = (shape[1], shape[2], shape[2])
        v = attrs.get("voxel_size")
        if v and voxel_pxct and not _same(float(v), voxel_pxct):
            raise ConfigError(f"pxct.voxel_size_m: {voxel_pxct:g} m but {cfg['pxct']['projections']!r} says "
                              f"voxel_size {float(v):g} m")
        voxel_pxct = voxel_pxct or v
    if cfg["pxct"]["volume"]:
        shape, attrs = _volume_info(cfg["pxct"]["volume"], "pxct.volume", "volume")
        v = attrs.get("voxel_size")
        if v and voxel_pxct and not _same(float(v), voxel_pxct):
            raise ConfigError(f"pxct.volume: voxel_size {float(v):g} m differs from pxct.voxel_size_m {voxel_pxct:g} m")
        if not (v or voxel_pxct):
            raise ConfigError("pxct.voxel_size_m: pxct.volume carries no voxel_size attribute; give it")
        voxel_pxct = voxel_pxct or float(v)
        pxct_shape = shape
    if pxct_shape is not None and p["pxct"] == "run":
        a = len(scan_files(cfg)) or pxct_shape[0]
        rep.memory["pxct"] = 4 * (6 * a * pxct_shape[0] * pxct_shape[1] + 3 * int(np.prod(pxct_shape)))
    # -- TXTM
    if cfg["txtm"]["scan"] and p["txtm"] == "run":
        key = "txtm.scan"
        path = Path(cfg["txtm"]["scan"])
        with _h5_open(path, key) as f:
            for ds in ("exchange/data", "exchange/data_white", "exchange/data_dark"):
                if ds not in f:
                    raise ConfigError(f"{key}: {str(path)!r} has no dataset /{ds} (not a Data Exchange file?)")
            data = f["exchange/data"]
            if data.ndim != 3:
                raise ConfigError(f"{key}: /exchange/data must be (angles, rows, cols), got shape {data.shape}")
            for ds in ("exchange/data_white", "exchange/data_dark"):
                if f[ds].shape[-2:] != data.shape[1:]:
                    raise ConfigError(f"{key}: /{ds} images {f[ds].shape[-2:]} differ from the projections' "
                                      f"{data.shape[1:]}")
            if "exchange/theta" in f and f["exchange/theta"].shape != (data.shape[0],):
                raise ConfigError(f"{key}: /exchange/theta has {f['exchange/theta'].shape[0]} angles for "
                                  f"{data.shape[0]} projections")
            try:
                data[-1, -1, -1]
                f["exchange/data_white"][()]
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{key}: {str(path)!r} cannot be read (truncated or corrupt?): {exc}") from None
            a, r, c = data.shape
            pixel_attr = f.attrs.get("pixel_size_m")
        px = cfg["txtm"]["pixel_size_m"]
        if px and pixel_attr is not None and not _same(px, float(pixel_attr)):
            raise ConfigError(f"txtm.pixel_size_m: {px:g} m but {str(path)!r} says pixel_size_m {float(pixel_attr):g} m")
        if not (px or pixel_attr):
            raise ConfigError(f"txtm.pixel_size_m: {str(path)!r} carries no pixel_size_m attribute; give it")
        txtm_shape = (r, c, c)
        rep.memory["txtm"] = 4 * (5 * a * r * c + 3 * r * c * c)
        rep.notes.append(f"txtm: {a} projections of {r}x{c}, pixel {(px or float(pixel_attr)) * 1e9:.3g} nm")
    if cfg["txtm"]["volume"]:
        shape, attrs = _volume_info(cfg["txtm"]["volume"], "txtm.volume", "volume")
        v = attrs.get("voxel_size")
        px = cfg["txtm"]["pixel_size_m"]
        if v and px and not _same(float(v), px):
            raise ConfigError(f"txtm.volume: voxel_size {float(v):g} m differs from txtm.pixel_size_m {px:g} m")
        txtm_shape = shape
    for key, default in (("fuse.fused", "volume"), ("segment.labels", "labels"), ("particles.particles", "particles")):
        sec, name = key.split(".")
        if cfg[sec][name]:
            shape, attrs = _volume_info(cfg[sec][name], key, default)
            v = attrs.get("voxel_size")
            if v and voxel_pxct and not _same(float(v), float(voxel_pxct)):
                raise ConfigError(f"{key}: voxel_size {float(v):g} m differs from the PXCT voxel {float(voxel_pxct):g} m")
            voxel_pxct = voxel_pxct or v
            pxct_shape = shape[-3:]
    if cfg["register"]["registration"] and not Path(cfg["register"]["registration"]).is_file():
        raise ConfigError(f"register.registration: no such file {cfg['register']['registration']!r}")
    if pxct_shape is not None:
        nv = int(np.prod(pxct_shape))
        if p["fsc"] == "run":
            rep.memory["fsc"] = 4 * 4 * max(nv, int(np.prod(txtm_shape)) if txtm_shape else 0)
        for stage, factor in (("register", 12), ("fuse", 4), ("segment", 40), ("particles", 16), ("coverage", 16),
                              ("echem", 4)):
            if p[stage] == "run":
                rep.memory[stage] = factor * 4 * nv
    rep.available = int(max_memory) if max_memory is not None else available_memory()
    return rep
