"""The figures of the report: analogs of the paper's Figs. 1-3, one function each.

Every function returns a ``matplotlib.figure.Figure`` made without pyplot (no global state, safe
in worker threads and without a display).  Lengths on axes are in micrometers, thicknesses in
nanometers; continuous maps use perceptually uniform color maps whose luminance rises
monotonically (they print in gray), and phases use ``tomofuse.PHASE_COLORS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np

from .. import _validate as check
from .._phase import PHASE_COLORS, Phase

__all__ = [
    "coverage_bars",
    "cross_sections",
    "volume_sections",
    "fsc_curves",
    "limiting_currents",
    "overpotential_curves",
    "particle_fields",
    "phase_surfaces",
    "registration_check",
    "segmentation_overlay",
    "sei_thickness_distributions",
    "sei_thickness_map",
    "soc_distributions",
]

#: Coverage categories in the paper's order and their colors (free = pore, contact = graphite).
_CATEGORY_COLORS = {"free": PHASE_COLORS[Phase.PORE], "cbd": PHASE_COLORS[Phase.CBD],
                    "contact": PHASE_COLORS[Phase.GRAPHITE], "sei": PHASE_COLORS[Phase.SEI]}
_FONT = 9


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _style(ax) -> None:
    ax.tick_params(labelsize=_FONT)
    ax.xaxis.label.set_size(_FONT + 1)
    ax.yaxis.label.set_size(_FONT + 1)
    ax.title.set_size(_FONT + 1)


def _volume(a, name: str, ndim: int = 3) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {a.shape}")
    if 0 in a.shape:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    return a


def _slice(volume: np.ndarray, axis: int, index: Optional[int]):
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0 (z), 1 (y) or 2 (x), got {axis!r}")
    n = volume.shape[axis]
    index = n // 2 if index is None else int(index)
    if not 0 <= index < n:
        raise ValueError(f"index {index} is outside axis {axis} of length {n}")
    return np.take(volume, index, axis=axis), index


def _extent(shape2d, axis: int, voxel_size: float):
    um = voxel_size * 1e6
    names = [("x", "y"), ("x", "z"), ("y", "z")][axis]
    rows, cols = shape2d
    return (0, cols * um, rows * um, 0), (f"{names[0]} (µm)", f"{names[1]} (µm)")


def _contrast(image: np.ndarray):
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [1, 99])
    return (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)


def _gray():
    """Gray color map with NaN (outside a field of view) in light gray."""
    import matplotlib

    return matplotlib.colormaps["gray"].with_extremes(bad="#cfcfcf")


def _normalized(image: np.ndarray) -> np.ndarray:
    lo, hi = _contrast(image)
    return np.clip((image - lo) / (hi - lo), 0, 1)


def cross_sections(pxct, txtm, *, voxel_size, axis=0, index=None, names=("PXCT (δ)", "TXTM (β)")):
    """PXCT and TXTM cross-sections of the registered pair, side by side (Fig. 1b-c).

    Parameters
    ----------
    pxct, txtm : (z, y, x) ndarray
        The two volumes on one grid (TXTM resampled onto the PXCT grid, as ``register.fuse`` gives);
        NaN (outside a field of view) shows as white.
    voxel_size : float
        Voxel edge, meters.
    axis : {0, 1, 2}
        Axis normal to the section (0 = z).
    index : int, optional
        Section index along ``axis`` (default the middle).
    names : (str, str)
        Panel titles.

    Returns
    -------
    matplotlib.figure.Figure
    """
    v = check.positive_length(voxel_size, "voxel_size")
    pxct, txtm = _volume(pxct, "pxct"), _volume(txtm, "txtm")
    if pxct.shape != txtm.shape:
        raise ValueError(f"pxct and txtm must share one grid, got {pxct.shape} and {txtm.shape}")
    fig = _figure(8, 4)
    axes = fig.subplots(1, 2)
    for ax, vol, name in zip(axes, (pxct, txtm), names):
        image, k = _slice(vol, axis, index)
        extent, (xl, yl) = _extent(image.shape, axis, v)
        lo, hi = _contrast(image)
        im = ax.imshow(np.ma.masked_invalid(image), cmap=_gray(), vmin=lo, vmax=hi, extent=extent,
                       interpolation="nearest")
        ax.set(xlabel=xl, ylabel=yl, title=f"{name}, {'zyx'[axis]} = {k}")
        fig.colorbar(im, ax=ax, shrink=0.8).set_label("reconstructed value (a.u.)", size=_FONT)
        _style(ax)
    return fig


def volume_sections(volume, *, voxel_size, name="volume"):
    """The three central orthogonal sections of one reconstructed volume (a one-modality run).

    Parameters
    ----------
    volume : (z, y, x) ndarray
        Reconstructed values; NaN shows as light gray.
    voxel_size : float
        Voxel edge, meters.
    name : str
        Title prefix (e.g. ``"TXTM"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    v = check.positive_length(voxel_size, "voxel_size")
    volume = _volume(volume, "volume")
    lo, hi = _contrast(volume[np.isfinite(volume)] if np.isfinite(volume).any() else volume)
    fig = _figure(11, 3.8)
    axes = fig.subplots(1, 3)
    for axis, ax in enumerate(axes):
        image, k = _slice(volume, axis, None)
        extent, (xl, yl) = _extent(image.shape, axis, v)
        im = ax.imshow(np.ma.masked_invalid(image), cmap=_gray(), vmin=lo, vmax=hi, extent=extent,
                       interpolation="nearest")
        ax.set(xlabel=xl, ylabel=yl, title=f"{name}, {'zyx'[axis]} = {k}")
        _style(ax)
    fig.colorbar(im, ax=list(axes), shrink=0.8).set_label("reconstructed value (a.u.)", size=_FONT)
    return fig


def registration_check(fixed, moving, *, voxel_size, axis=0, index=None, tiles=8):
    """Registration check: a checkerboard of the two volumes and a two-color overlay (Fig. 1d).

    Edges that continue across the checkerboard's tiles, and an overlay without colored fringes,
    show a good registration.

    Parameters
    ----------
    fixed, moving : (z, y, x) ndarray
        The fixed volume and the moving volume resampled onto it.
    voxel_size : float
        Voxel edge, meters.
    axis, index
        As in ``cross_sections``.
    tiles : int
        Checkerboard tiles along the longer side of the section.

    Returns
    -------
    matplotlib.figure.Figure
    """
    v = check.positive_length(voxel_size, "voxel_size")
    fixed, moving = _volume(fixed, "fixed"), _volume(moving, "moving")
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed and moving must share one grid, got {fixed.shape} and {moving.shape}")
    if int(tiles) < 2:
        raise ValueError(f"tiles must be >= 2, got {tiles!r}")
    a, k = _slice(fixed, axis, index)
    b, _ = _slice(moving, axis, k)
    a, b = _normalized(a.astype(np.float64)), _normalized(b.astype(np.float64))
    size = max(a.shape) / int(tiles)
    rr, cc = np.indices(a.shape)
    board = np.where(((rr // size + cc // size) % 2).astype(bool), b, a)
    overlay = np.stack([a, b, a], axis=-1)  # fixed magenta, moving green; equal -> gray
    overlay[~np.isfinite(overlay).all(axis=-1)] = 0.81  # outside either field of view: light gray
    extent, (xl, yl) = _extent(a.shape, axis, v)
    fig = _figure(8, 4.3)
    axes = fig.subplots(1, 2)
    axes[0].imshow(np.ma.masked_invalid(board), cmap=_gray(), vmin=0, vmax=1, extent=extent,
                   interpolation="nearest")
    axes[0].set(xlabel=xl, ylabel=yl, title=f"checkerboard fixed / moving, {'zyx'[axis]} = {k}")
    axes[1].imshow(overlay, extent=extent, interpolation="nearest")
    axes[1].set(xlabel=xl, ylabel=yl, title="overlay: fixed magenta, moving green")
    for ax in axes:
        _style(ax)
    return fig


def segmentation_overlay(image, labels, *, voxel_size, axis=0, index=None, alpha=0.45):
    """The segmentation's phases over the fused image (Fig. 1e).

    Parameters
    ----------
    image : (z, y, x) ndarray
        Gray values (e.g. the PXCT channel of the fused volume).
    labels : (z, y, x) ndarray of int
        ``tomofuse.Phase`` codes on the same grid.
    voxel_size : float
        Voxel edge, meters.
    axis, index
        As in ``cross_sections``.
    alpha : float
        Opacity of the phase colors, (0, 1].

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    v = check.positive_length(voxel_size, "voxel_size")
    image, labels = _volume(image, "image"), _volume(labels, "labels")
    if image.shape != labels.shape:
        raise ValueError(f"image and labels must share one grid, got {image.shape} and {labels.shape}")
    if not 0 < float(alpha) <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    g, k = _slice(image, axis, index)
    lab, _ = _slice(labels, axis, k)
    extent, (xl, yl) = _extent(g.shape, axis, v)
    cmap = ListedColormap([PHASE_COLORS[p] for p in Phase])
    fig = _figure(9, 4)
    axes = fig.subplots(1, 2)
    lo, hi = _contrast(g)
    axes[0].imshow(g, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
    axes[0].set(xlabel=xl, ylabel=yl, title=f"fused image, {'zyx'[axis]} = {k}")
    axes[1].imshow(g, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
    axes[1].imshow(np.clip(lab, 0, len(Phase) - 1), cmap=cmap, vmin=-0.5, vmax=len(Phase) - 0.5, alpha=float(alpha),
                   extent=extent, interpolation="nearest")
    axes[1].set(xlabel=xl, ylabel=yl, title="segmentation")
    axes[1].legend(handles=[Patch(color=PHASE_COLORS[p], label=p.name.lower()) for p in Phase],
                   loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=_FONT, frameon=False)
    for ax in axes:
        _style(ax)
    return fig


def phase_surfaces(labels, *, voxel_size, phases=(Phase.SILICON, Phase.SEI), max_size=48):
    """3-D rendering of a segmented sub-volume: marching-cubes surfaces of the phases (Fig. 1f).

    Parameters
    ----------
    labels : (z, y, x) ndarray of int
        ``tomofuse.Phase`` codes.
    voxel_size : float
        Voxel edge, meters.
    phases : sequence of Phase
        Phases drawn (each as the surface of its voxels).
    max_size : int
        Edge (voxels) of the central sub-volume rendered; larger volumes are cropped to it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Patch
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    v = check.positive_length(voxel_size, "voxel_size")
    labels = _volume(labels, "labels")
    n = int(max_size)
    if n < 4:
        raise ValueError(f"max_size must be >= 4 voxels, got {max_size!r}")
    starts = [max(0, (s - n) // 2) for s in labels.shape]
    sub = labels[tuple(slice(a, a + n) for a in starts)]
    um = v * 1e6
    fig = _figure(6, 5.5)
    ax = fig.add_subplot(projection="3d")
    handles = []
    for p in phases:
        p = Phase(p)
        mask = np.pad(sub == p, 1).astype(np.float32)
        if mask.max() == 0:
            continue
        # a light smoothing of the voxel mask (0.7 voxel) turns its staircase into a surface a reader
        # takes for the particle; the level set stays at the voxel faces' 0.5
        verts, faces, _, _ = marching_cubes(gaussian_filter(mask, 0.7), 0.5)
        verts = (verts - 1)[:, ::-1] * um  # (z, y, x) -> (x, y, z)
        mesh = Poly3DCollection(verts[faces], facecolors=PHASE_COLORS[p], edgecolors=PHASE_COLORS[p], linewidths=0, shade=True,
                                alpha=0.95 if p == Phase.SILICON else 0.3)
        ax.add_collection3d(mesh)
        handles.append(Patch(color=PHASE_COLORS[p], label=p.name.lower()))
    nz, ny, nx = sub.shape
    ax.set(xlim=(0, nx * um), ylim=(0, ny * um), zlim=(0, nz * um), xlabel="x (µm)", ylabel="y (µm)",
           zlabel="z (µm)", title=f"segmented sub-volume ({nx} × {ny} × {nz} voxels)")
    ax.set_box_aspect((nx, ny, nz))
    ax.legend(handles=handles, loc="upper left", fontsize=_FONT, frameon=False)
    _style(ax)
    return fig


def fsc_curves(curves: Mapping):
    """Fourier shell correlation curves with their ½-bit thresholds and resolutions (Fig. 1g).

    Parameters
    ----------
    curves : mapping of str to tomofuse.tomo.FSCResult
        One curve per modality, e.g. ``{"PXCT": fsc_pxct, "TXTM": fsc_txtm}``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping of name -> FSCResult")
    fig = _figure(6.5, 4)
    ax = fig.subplots()
    for k, (name, r) in enumerate(curves.items()):
        color = f"C{k}"
        f = np.asarray(r.frequency) * 1e-6  # 1/µm
        ax.plot(f, r.fsc, color=color, lw=1.5, label=f"{name}: {r.resolution * 1e9:.0f} nm half-period"
                + ("" if r.crossed else " (no crossing: Nyquist)"))
        ax.plot(f, r.threshold_curve, color=color, lw=1, ls="--")
        if r.crossed:
            ax.axvline(1e-6 / r.resolution, color=color, lw=0.8, ls=":")
    ax.plot([], [], color="k", ls="--", lw=1, label="½-bit threshold")
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set(xlabel="spatial frequency (1/µm)", ylabel="Fourier shell correlation", ylim=(-0.2, 1.05),
           title="resolution from two half data sets (Fourier shell correlation)")
    ax.legend(fontsize=_FONT, frameon=False)
    _style(ax)
    return fig


def coverage_bars(measured: Mapping, *, truth: Optional[Mapping] = None):
    """Area-weighted coverage fractions per category and data set, with the truth marked (Fig. 2g).

    Parameters
    ----------
    measured : mapping of str to mapping
        Per data set (e.g. ``"pristine"``, ``"cycled"``) the fractions ``free``, ``cbd``,
        ``contact``, ``sei`` (e.g. the ``area_weighted`` row of ``analysis.summarize``).
    truth : mapping of str to mapping, optional
        The same layout for the exact values; drawn as a black bar across each measured bar.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from ..analysis import CATEGORIES

    if not isinstance(measured, Mapping) or not measured:
        raise ValueError("measured must be a non-empty mapping of data set -> fractions")
    names = list(measured)
    width = 0.8 / len(names)
    hatches = ["", "//", "..", "xx", "\\\\"]
    fig = _figure(7.5, 4)
    ax = fig.subplots()
    x = np.arange(len(CATEGORIES))
    marked = False
    for k, name in enumerate(names):
        h = np.array([float(measured[name][c]) for c in CATEGORIES])
        xs = x - 0.4 + width * (k + 0.5)
        ax.bar(xs, h, width * 0.92, color=[_CATEGORY_COLORS[c] for c in CATEGORIES], edgecolor="0.5", lw=0.6,
               hatch=hatches[k % len(hatches)], label=name)
        t = None
        if truth and name in truth:
            t = np.array([float(truth[name][c]) for c in CATEGORIES])
            ax.hlines(t, xs - width * 0.46, xs + width * 0.46, color="k", lw=2.2)
            marked = True
        # the value above its bar and above the truth mark, whichever is higher (never under the mark)
        above = h if t is None else np.maximum(h, t)
        for xi, val, y in zip(xs, h, above):
            ax.text(xi, y + 0.012, f"{100 * val:.0f}", ha="center", va="bottom", fontsize=_FONT - 1)
    ax.set_xticks(x, [f"{c}" for c in CATEGORIES])
    # the legend shows the data sets by hatch (the colors are the categories')
    handles = [Patch(facecolor="white", edgecolor="k", hatch=hatches[k % len(hatches)], label=n)
               for k, n in enumerate(names)]
    if marked:
        handles.append(Line2D([], [], color="k", lw=2.2, label="truth"))
    top = max(float(measured[n][c]) for n in names for c in CATEGORIES)
    if truth:
        top = max([top] + [float(truth[n][c]) for n in names if n in truth for c in CATEGORIES])
    ax.set(ylabel="share of silicon surface", ylim=(0, min(1.0, top + 0.15) if top < 0.85 else 1.05),
           title="surface coverage of the silicon particles (area-weighted, values in %)")
    ax.legend(handles=handles, fontsize=_FONT, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _style(ax)
    return fig


def sei_thickness_distributions(thickness, *, truth=None, bins=12):
    """Per-particle SEI thickness: distributions of the mean and of the within-particle std (Fig. 2h).

    Parameters
    ----------
    thickness : pandas.DataFrame
        From ``analysis.sei_thickness`` (columns ``mean_m``, ``std_m``).
    truth : pandas.DataFrame, optional
        The same columns for the exact values (the phantom's); drawn as outlines.
    bins : int
        Histogram bins.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import MaxNLocator

    for col in ("mean_m", "std_m"):
        if col not in thickness:
            raise ValueError(f"thickness needs the column {col!r} (the table of analysis.sei_thickness)")
    fig = _figure(8, 3.6)
    axes = fig.subplots(1, 2)
    for ax, col, what in zip(axes, ("mean_m", "std_m"), ("mean", "standard deviation")):
        m = np.asarray(thickness[col], dtype=float) * 1e9
        m = m[np.isfinite(m)]
        t = None
        if truth is not None and col in truth:
            t = np.asarray(truth[col], dtype=float) * 1e9
            t = t[np.isfinite(t)]
        allv = np.concatenate([m, t]) if t is not None else m
        edges = np.linspace(allv.min(), allv.max(), int(bins) + 1) if allv.size and allv.max() > allv.min() else int(bins)
        if m.size:
            ax.hist(m, edges, color=PHASE_COLORS[Phase.SILICON], alpha=0.8,
                    label=f"measured (median {np.median(m):.0f} nm, n = {m.size})")
        if t is not None and t.size:
            ax.hist(t, edges, histtype="step", color="k", lw=1.5, label=f"truth (median {np.median(t):.0f} nm)")
        ax.set(xlabel=f"per-particle {what} of SEI thickness (nm)", ylabel="particles")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
        ax.legend(fontsize=_FONT, frameon=False, loc="upper left")
        _style(ax)
    return fig


def sei_thickness_map(surface, particle: int):
    """SEI thickness over one particle's surface, in spherical coordinates about its centroid (Fig. 2i).

    Parameters
    ----------
    surface : tomofuse.analysis.Surface
        From ``surface_coverage(..., return_surface=True)``.
    particle : int
        Particle id.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ids = np.asarray(surface.particle)
    sel = ids == int(particle)
    if not sel.any():
        raise ValueError(f"particle {particle} has no surface elements")
    pos = np.asarray(surface.position)[sel]  # (n, 3) z, y, x in meters
    area = np.asarray(surface.area)[sel]
    cat = np.asarray(surface.category)[sel]
    thick = np.asarray(surface.thickness)[sel] * 1e9
    c = np.average(pos, axis=0, weights=area)
    d = pos - c
    r = np.linalg.norm(d, axis=1)
    polar = np.degrees(np.arccos(np.clip(d[:, 0] / np.where(r > 0, r, 1), -1, 1)))
    azimuth = np.degrees(np.arctan2(d[:, 1], d[:, 2]))
    sei = cat == 3
    fig = _figure(7.5, 4)
    ax = fig.subplots()
    ax.scatter(azimuth[~sei], polar[~sei], s=6, color="0.85", label="no SEI", rasterized=True)
    if sei.any():
        sc = ax.scatter(azimuth[sei], polar[sei], s=8, c=thick[sei], cmap="viridis", rasterized=True)
        fig.colorbar(sc, ax=ax).set_label("SEI thickness (nm)", size=_FONT + 1)
        mean = np.average(thick[sei], weights=area[sei])
        title = f"particle {particle}: SEI on {100 * area[sei].sum() / area.sum():.0f} % of the surface, mean {mean:.0f} nm"
    else:
        title = f"particle {particle}: no SEI"
    ax.set(xlabel="azimuth (degrees)", ylabel="polar angle from +z (degrees)", xlim=(-180, 180), ylim=(180, 0),
           title=title)
    # below the axes: inside, the key covered surface points in its corner
    fig.legend(*ax.get_legend_handles_labels(), fontsize=_FONT, frameon=False, loc="outside lower left")
    _style(ax)
    return fig


def soc_distributions(scenario: Mapping):
    """SOC distributions of a delithiating particle at two C-rates (Fig. 3a-c).

    Parameters
    ----------
    scenario : dict
        From ``echem.scenarios.soc_distribution`` (``histograms``, ``table``, ``iqr_ratio``, ``paper``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    edges = np.asarray(scenario["histograms"]["edges"]) * 100
    dens = scenario["histograms"]["density"]
    table = scenario["table"]
    fig = _figure(6.5, 4)
    ax = fig.subplots()
    centers = 0.5 * (edges[1:] + edges[:-1])
    for k, (rate, d) in enumerate(dens.items()):
        iqr = float(table.loc[rate, "iqr"]) * 100
        ax.step(centers, np.asarray(d) / 100, where="mid", color=f"C{k}", lw=1.6,
                label=f"{rate:g} C: interquartile range {iqr:.2f} % SOC")
        ax.axvspan(float(table.loc[rate, "q25"]) * 100, float(table.loc[rate, "q75"]) * 100, color=f"C{k}", alpha=0.12)
    ax.set(xlabel="state of charge (%)", ylabel="volume fraction per % SOC",
           title=f"SOC distribution: IQR ratio {scenario['iqr_ratio']:.2f} (paper {scenario['paper']:.1f})")
    ax.legend(fontsize=_FONT, frameon=False)
    _style(ax)
    return fig


def particle_fields(result, *, step=-1, axis=0):
    """Li concentration (SOC) and electron potential on a central section of the particle (Fig. 3e).

    Parameters
    ----------
    result : tomofuse.echem.Result
        A simulation with saved fields.
    step : int
        Saved step to show (default the last).
    axis : {0, 1, 2}
        Axis normal to the section.

    Returns
    -------
    matplotlib.figure.Figure
    """
    soc = np.asarray(result.soc_field(step))
    phi = np.asarray(result.potential_field(step))
    v = float(result.particle.voxel_size)
    # the section through the particle's largest cross-section along axis
    inside = np.isfinite(soc)
    counts = inside.sum(axis=tuple(a for a in range(3) if a != axis))
    k = int(np.argmax(counts))
    fig = _figure(8.5, 3.8)
    axes = fig.subplots(1, 2)
    time = float(result.saved_times[step])
    # the potential varies by microvolts to millivolts about a level of hundreds of millivolts:
    # shown relative to its minimum over the particle (the level is in the label)
    low = float(np.nanmin(phi))
    for ax, field, label, cmap, scale in ((axes[0], soc, "SOC (%)", "viridis", 100.0),
                                          (axes[1], phi - low, f"electron potential − {low * 1e3:.1f} mV (µV)",
                                           "cividis", 1e6)):
        image = np.take(field, k, axis=axis) * scale
        extent, (xl, yl) = _extent(image.shape, axis, v)
        im = ax.imshow(np.ma.masked_invalid(image), cmap=cmap, extent=extent, interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.85).set_label(label, size=_FONT + 1)
        ax.set(xlabel=xl, ylabel=yl, title=f"{result.c_rate:g} C, t = {time:.0f} s, {'zyx'[axis]} = {k}")
        _style(ax)
    return fig


def overpotential_curves(scenario: Mapping):
    """Overpotential vs C-rate with and without the particle's SEI (Fig. 3g-i).

    Parameters
    ----------
    scenario : dict
        From ``echem.scenarios.sei_effect`` (``table``, ``paper``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = scenario["table"]
    rates = np.asarray(t.index, dtype=float)
    fig = _figure(6.5, 4)
    ax = fig.subplots()
    ax.plot(rates, np.asarray(t["overpotential_without_sei_V"]) * 1e3, "o-", color="C0", label="without SEI")
    ax.plot(rates, np.asarray(t["overpotential_with_sei_V"]) * 1e3, "s-", color="C1", label="with SEI")
    paper = scenario.get("paper") or {}
    if paper:
        ax.plot([1.1], [paper["without_sei_V"] * 1e3], "o", mfc="none", mec="C0", ms=10, label="paper, without SEI")
        ax.plot([1.1], [paper["with_sei_V"] * 1e3], "s", mfc="none", mec="C1", ms=10, label="paper, with SEI")
    ax.set(xlabel="C-rate (1/h)", ylabel="overpotential (mV)", title="overpotential at 70 % SOC, delithiation")
    ax.legend(fontsize=_FONT, frameon=False)
    _style(ax)
    return fig


def limiting_currents(scenario: Mapping, *, max_overpotential=0.1):
    """Ionic and electronic overpotential vs C-rate and the two limiting currents (Fig. 3d-f).

    Parameters
    ----------
    scenario : dict
        From ``echem.scenarios.electronic_vs_ionic`` (``curve``, ``table``).
    max_overpotential : float
        The voltage budget the limits were found at, V.

    Returns
    -------
    matplotlib.figure.Figure
    """
    curve = scenario["curve"]
    table = scenario["table"]
    fig = _figure(6.5, 4)
    ax = fig.subplots()
    ax.plot(curve["c_rate"], np.asarray(curve["ionic_overpotential"]) * 1e3, "o-", color="C0", ms=3, label="ionic path")
    ax.plot(curve["c_rate"], np.asarray(curve["electronic_overpotential"]) * 1e3, "s-", color="C1", ms=3,
            label="electronic path")
    ax.axhline(max_overpotential * 1e3, color="k", lw=0.8, ls="--", label=f"budget {max_overpotential * 1e3:.0f} mV")
    for name, color in (("ionic_limit_c_rate", "C0"), ("electronic_limit_c_rate", "C1")):
        ax.axvline(float(table.loc[name, "tomofuse"]), color=color, lw=1, ls=":")
        ax.axvline(float(table.loc[name, "paper"]), color=color, lw=2, alpha=0.35)
    ax.plot([], [], color="0.5", lw=2, alpha=0.5, label="paper's limits")
    ax.set_xscale("log")
    searched = float(np.max(curve["c_rate"]))

    def limit(name):
        value = float(table.loc[name, "tomofuse"])
        # the search returns its upper bound when the budget is never reached
        return f"≥ {value:.3g} C (not reached)" if value >= searched * (1 - 1e-9) else f"{value:.2f} C"

    ax.set(xlabel="C-rate (1/h)", ylabel="steady-state overpotential (mV)",
           title=f"limits from 6 % SOC: electronic {limit('electronic_limit_c_rate')}, "
           f"ionic {limit('ionic_limit_c_rate')}")
    ax.legend(fontsize=_FONT, frameon=False)
    _style(ax)
    return fig
