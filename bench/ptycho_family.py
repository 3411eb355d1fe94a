"""A family of independent far-field ptychography cases for choosing the engines' defaults (issue 15).

Each member is drawn, with its own fixed seed, from ranges that cover what real instruments
produce; none is tied to the phantom the engines were developed on:

- object (256^2 pixels): one of three sources -- a projected battery electrode
  (``tomofuse.phantom``), a random "particles" texture (overlapping discs and ellipses with
  soft edges), or a natural image from scikit-image (``camera``, ``brick``, ``grass``,
  ``gravel``, ``astronaut``; random crop) -- turned into ``exp(i phi - mu)`` with the phase
  spanning 0.1-3 rad (log-uniform) and ``mu = ratio * phi``, ratio 0.02-0.3;
- probe (64^2): a circular pupil (NA as ``tomofuse.ptycho.focused_probe``'s default), a
  central stop 0-0.3, astigmatism and coma of 0-1.5 rad each at the pupil edge (random
  orientations), defocused to a beam of 0.35-0.6 N; 1-3 mutually incoherent modes (the
  extra ones from pupils tilted by a fraction of the pupil radius, 10-30 % of the power);
- scan: Fermat spiral, linear overlap 50-80 %; the positions handed to the engines carry
  errors of 0-2 px (Gaussian, per axis, rms drawn per member);
- data: 1e4-1e8 photons per pattern (log-uniform), Poisson;
- initial probe: ``focused_probe`` with the nominal beam diameter off by 15-40 % and no
  aberrations, and as many modes as the data carry.

The forward model of the simulation is not the engines' model: each exit wave is computed on
the whole-pixel probe grid with the OBJECT moved by the sub-pixel fraction (a Fourier shift of
an object crop with a margin), whereas the engines shift the probe (or interpolate the
object), so no member is an inverse crime.

``run_member`` runs ``tomofuse.ptycho.reconstruct`` and records the object error
(``tomofuse.ptycho.object_error`` over the well-scanned region) at DM checkpoints
(100, 200, 400, 800) and after ML (100, 400, 800), by reading the engine state the checkpoints
would save (the checkpoint writer is replaced by an in-memory copy).

Run from the repository root (niced, one at a time on a shared machine)::

    python bench/ptycho_family.py build /tmp/pfam            # 12 members -> /tmp/pfam/m00.npz ...
    python bench/ptycho_family.py run /tmp/pfam --tag defaults [--members 0-11] [--dm 800 --ml 800]

``python bench/ptycho_family.py ptychi /tmp/pfam --python VENV/bin/python`` runs pty-chi's DM and
LSQML on the same files (``bench/ptychi_runner.py`` in a venv with ``ptychi``, CPU ``torch`` and
tomofuse importable), and ``python bench/ptycho_family.py table /tmp/pfam`` prints every recorded
run side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage

from tomofuse import ptycho

SIDE = 256
N = 64
ENERGY_KEV = 6.2
PIXEL = ptycho.object_pixel_size(6.2, 7.362, 172e-6, 400)
MASK_LEVEL = 0.3
MEMBERS = 12
IMAGES = ("camera", "brick", "grass", "gravel", "astronaut")


# ----------------------------------------------------------------------------------------- objects


def _phantom_map(rng) -> np.ndarray:
    from tomofuse import phantom

    vox = 64
    zoom = SIDE / vox
    el = phantom.electrode((vox,) * 3, zoom * PIXEL, seed=int(rng.integers(1 << 30)), truth_samples=1000, threads=1)
    delta, _ = phantom.refractive_volume(el, ENERGY_KEV)
    return scipy.ndimage.zoom(delta.astype(np.float64).sum(axis=0), zoom, order=3, mode="grid-wrap", grid_mode=True)


def _particles_map(rng) -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    out = np.zeros((SIDE, SIDE))
    for _ in range(int(rng.integers(40, 120))):
        cy, cx = rng.uniform(0, SIDE, 2)
        a, b = rng.uniform(3, 30, 2)
        t = rng.uniform(0, math.pi)
        dy, dx = yy - cy, xx - cx
        u = (dy * math.cos(t) + dx * math.sin(t)) / a
        v = (-dy * math.sin(t) + dx * math.cos(t)) / b
        inside = np.hypot(u, v) <= 1.0
        out += rng.uniform(0.2, 1.0) * inside
    return scipy.ndimage.gaussian_filter(out, rng.uniform(0.5, 1.5))


def _image_map(rng) -> np.ndarray:
    import skimage.data
    import skimage.color

    name = IMAGES[int(rng.integers(len(IMAGES)))]
    im = getattr(skimage.data, name)()
    if im.ndim == 3:
        im = skimage.color.rgb2gray(im)
    im = im.astype(np.float64)
    y0, x0 = rng.integers(0, im.shape[0] - SIDE + 1), rng.integers(0, im.shape[1] - SIDE + 1)
    return im[y0:y0 + SIDE, x0:x0 + SIDE]


def make_object(kind: str, rng, phase: float, ratio: float) -> np.ndarray:
    m = {"phantom": _phantom_map, "particles": _particles_map, "image": _image_map}[kind](rng)
    m = (m - m.min()) / max(float(np.ptp(m)), 1e-30)
    return np.exp((1j - ratio) * phase * m)


# ------------------------------------------------------------------------------------------- probe


def pupil_probe(*, diameter_px: float, astig: float, coma: float, stop: float, rng, tilt=(0.0, 0.0),
                aberrated: bool = True) -> np.ndarray:
    """(N, N) complex128 probe centered at N // 2, sum |P|^2 = 1."""
    lam = 1.0  # units: object pixels and the wavelength in the ratio lam / dx only
    dx = 1.0
    na = lam / (4.0 * dx)
    defocus = diameter_px * dx / (2.0 * na)
    u = np.fft.fftfreq(N, d=dx)
    uy, ux = np.meshgrid(u, u, indexing="ij")
    u_max = na / lam
    rho = np.hypot(uy - tilt[0] * u_max, ux - tilt[1] * u_max) / u_max
    theta = np.arctan2(uy, ux)
    pupil = ((rho <= 1.0) & (rho >= stop)).astype(np.complex128)
    if aberrated:
        ta, tc = rng.uniform(0, math.pi, 2)
        w = astig * rho ** 2 * np.cos(2 * (theta - ta)) + coma * (3 * rho ** 3 - 2 * rho) * np.cos(theta - tc)
        pupil *= np.exp(1j * w)
    field = pupil * np.exp(-1j * math.pi * lam * defocus * (uy ** 2 + ux ** 2))
    p = np.fft.fftshift(np.fft.ifft2(field))
    return p / math.sqrt(float(np.sum(np.abs(p) ** 2)))


# -------------------------------------------------------------------------------------- simulation


def simulate(obj: np.ndarray, probes: np.ndarray, weights, positions: np.ndarray, photons: float, rng) -> np.ndarray:
    """Poisson patterns (K, n, n) for probes of n x n pixels, zero frequency at n // 2: the object crop
    Fourier-shifted by -fraction (the object needs a margin of 8 pixels around every window)."""
    m = 8  # margin of the crop, pixels
    n = np.shape(probes[0])[-1]
    h, w = obj.shape
    k = len(positions)
    out = np.empty((k, n, n))
    f = np.fft.fftfreq(n + 2 * m)
    for i, (py, px) in enumerate(positions):
        iy, ix = math.floor(py), math.floor(px)
        fy, fx = py - iy, px - ix
        y0, x0 = h // 2 + iy - n // 2 - m, w // 2 + ix - n // 2 - m
        crop = obj[y0:y0 + n + 2 * m, x0:x0 + n + 2 * m]
        ramp = np.exp(2j * math.pi * (f[:, None] * fy + f[None, :] * fx))  # moves the crop by -fraction
        o = np.fft.ifft2(np.fft.fft2(crop) * ramp)[m:m + n, m:m + n]
        inten = np.zeros((n, n))
        for p, wt in zip(probes, weights):
            inten += wt * np.abs(np.fft.fft2(p * o, norm="ortho")) ** 2
        out[i] = np.fft.fftshift(inten)
    out *= photons / out.sum(axis=(1, 2)).mean()
    return rng.poisson(out).astype(np.float32)


def well_scanned(shape, probe: np.ndarray, positions: np.ndarray) -> np.ndarray:
    h, w = shape
    illum = np.zeros(shape)
    p2 = np.abs(probe) ** 2
    for y, x in np.floor(positions).astype(int):
        y0, x0 = h // 2 + y - N // 2, w // 2 + x - N // 2
        illum[y0:y0 + N, x0:x0 + N] += p2
    return illum >= MASK_LEVEL * illum.max()


def member_parameters(index: int) -> dict:
    """Member ``index``'s parameters: the main ranges stratified over the family (a Latin hypercube with a
    fixed seed, so that every range is covered from end to end), the rest drawn per member."""
    strata = np.random.default_rng(20261204)
    u = {name: (strata.permutation(MEMBERS)[index % MEMBERS] + strata.uniform()) / MEMBERS
         for name in ("phase", "photons", "overlap", "position_error", "astig", "coma", "diameter", "modes")}
    rng = np.random.default_rng(1000 + index)
    return {
        "index": index,
        "object": ("phantom", "particles", "image")[index % 3],
        "phase": float(math.exp(math.log(0.1) + u["phase"] * math.log(30.0))),
        "ratio": float(rng.uniform(0.02, 0.3)),
        "diameter": float((0.35 + 0.25 * u["diameter"]) * N),
        "astig": float(1.5 * u["astig"]),
        "coma": float(1.5 * u["coma"]),
        "stop": float(rng.choice([0.0, rng.uniform(0.1, 0.3)])),
        "modes": int(1 + math.floor(3 * u["modes"])),
        "overlap": float(0.5 + 0.3 * u["overlap"]),
        "position_error": float(2.0 * u["position_error"]),
        "photons": float(10 ** (4 + 4 * u["photons"])),
        "guess_error": float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.4)),
        "seed": 1000 + index,
    }


def make_member(index: int) -> dict:
    """The arrays of family member ``index`` (see :func:`make_case`)."""
    return make_case(member_parameters(index))


def make_case(prm: dict) -> dict:
    """A case from explicit parameters (the keys of :func:`member_parameters`): intensities, nominal and true
    positions, the initial probe guess, the true probe modes (scaled by the square roots of their weights), the
    true object, the well-scanned mask and the parameters as JSON."""
    prm = dict(prm)
    rng = np.random.default_rng(prm["seed"] + 7)
    obj = make_object(prm["object"], rng, prm["phase"], prm["ratio"])
    modes = prm["modes"]
    tilts = [(0.0, 0.0)] + [tuple(rng.uniform(-0.15, 0.15, 2)) for _ in range(modes - 1)]
    probes = []
    for t in tilts:
        probes.append(pupil_probe(diameter_px=prm["diameter"], astig=prm["astig"], coma=prm["coma"],
                                  stop=prm["stop"], rng=np.random.default_rng(prm["seed"] + 11), tilt=t))
    weights = [1.0] + list(rng.uniform(0.1, 0.3, modes - 1))
    step = (1.0 - prm["overlap"]) * prm["diameter"]
    margin = 8 + 2 * 3  # simulation crop margin + room for position errors
    field = SIDE - N - 2 * margin
    true_pos = ptycho.fermat_spiral(step, (field, field))
    err = rng.normal(0.0, prm["position_error"] / math.sqrt(2.0), true_pos.shape)
    err = np.clip(err, -5.0, 5.0)
    nominal = true_pos + err
    intens = simulate(obj, probes, weights, true_pos, prm["photons"], rng)
    guess = pupil_probe(diameter_px=prm["diameter"] * (1.0 + prm["guess_error"]), astig=0, coma=0,
                        stop=prm["stop"], rng=rng, aberrated=False)
    mask = well_scanned(obj.shape, probes[0], true_pos)
    prm["positions"] = len(true_pos)
    return {"intensities": intens, "positions_px": nominal, "positions_true": true_pos,
            "probe": guess.astype(np.complex64),
            "probe_true": np.stack([p * math.sqrt(w) for p, w in zip(probes, weights)]).astype(np.complex64),
            "truth": obj.astype(np.complex64), "mask": mask,
            "params": json.dumps(prm)}


# ---------------------------------------------------------------------------------------------- runs


DM_MARKS = (20, 100, 200, 400, 800)
ML_MARKS = (50, 100, 200, 400, 800)


def run_member(case: dict, *, dm_iters: int = 800, ml_iters: int = 800, threads: int = 1, **options) -> dict:
    """Errors at the DM and ML checkpoints, seconds, and the final reconstruction."""
    from tomofuse.ptycho import _reconstruct as rec_mod

    prm = json.loads(str(case["params"]))
    truth, mask = case["truth"], case["mask"]
    marks, iterates = {}, {}
    engines = [("dm", dm_iters)] + ([("ml", ml_iters)] if ml_iters else [])

    def capture(path, state):  # the checkpoint writer: keep the error at the marks instead of a file
        if state["iteration"] == 0:  # the end of stage - 1
            name, it = engines[state["stage"] - 1]
        else:
            name, it = engines[state["stage"]][0], state["iteration"]
        if (name == "dm" and it in DM_MARKS) or (name == "ml" and it in ML_MARKS) or state["iteration"] == 0:
            # marks: what a run of that length returns (under HoldOut the stage's candidate so far, which is also
            # what a run stopped there returns); iterates: the engine's current iterate
            arrays = state["arrays"]
            iterates[f"{name}{it}"] = float(ptycho.object_error(arrays["object"], truth, mask=mask))
            marks[f"{name}{it}"] = float(ptycho.object_error(arrays.get("held_object", arrays["object"]), truth,
                                                             mask=mask))

    saved = rec_mod._save_checkpoint
    rec_mod._save_checkpoint = capture
    try:
        t0 = time.perf_counter()
        r = ptycho.reconstruct(case["intensities"], case["positions_px"], case["probe"], object_shape=truth.shape,
                               engines=engines, probe_modes=prm["modes"], checkpoint="/dev/null/unused",
                               checkpoint_every=10, threads=threads, **options)
        seconds = time.perf_counter() - t0
    finally:
        rec_mod._save_checkpoint = saved
    return {"marks": marks, "iterates": iterates, "final": float(ptycho.object_error(r.object, truth, mask=mask)),
            "seconds": seconds,
            "ml_iterations": len(r.errors[-1][1]) if ml_iters else 0,
            # the ML iteration whose iterate is the result under HoldOut (None without held-out patterns)
            "ml_best": (int(r.validation[-1][r.validation[-1][:, 2] > 0][-1, 0])
                        if ml_iters and len(r.validation[-1]) else None)}


def run_ptychi(d: Path, members, *, python: str, algos: str, dm: int, ml: int, threads: int) -> None:
    """pty-chi's DM, LSQML and DM -> LSQML on the members' files, each result a row of ``runs.jsonl`` tagged
    ``ptychi-<algo>`` (the error after the last stage in ``final``, per stage in ``marks``)."""
    import ptychi_runner

    for i in members:
        out = ptychi_runner.invoke(d / f"m{i:02d}.npz", python=python, threads=threads, dm=dm, ml=ml, algos=algos)
        for res in out["results"]:
            if "error" in res:
                print(f"ptychi-{res['algo']} m{i:02d}: {res['error']}", flush=True)
                continue
            stages = [k for k in ("dm", "lsqml") if k in res]
            marks = {f"{k}{res[k]['iterations']}": res[k]["object_error"] for k in stages}
            row = {"tag": f"ptychi-{res['algo']}", "member": i, "marks": marks,
                   "final": res[stages[-1]]["object_error"],
                   "seconds": sum(res[k]["total_s"] for k in stages), "ptychi": res["ptychi"],
                   "torch": res["torch"], "probe_modes": res["probe_modes"],
                   "s_per_iter": {k: res[k]["s_per_iter"] for k in stages}}
            with open(d / "runs.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{row['tag']} m{i:02d}: " + " ".join(f"{k}={v:.3f}" for k, v in marks.items()) +
                  f" ({row['seconds']:.0f} s)", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("dir")
    b.add_argument("--members", default=f"0-{MEMBERS - 1}")
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--tag", required=True)
    r.add_argument("--members", default=f"0-{MEMBERS - 1}")
    r.add_argument("--dm", type=int, default=800)
    r.add_argument("--ml", type=int, default=800)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--options", default="{}",
                   help="JSON: subpixel_steps, dm={...}, ml={...}, refine_positions, holdout (bool or {...})")
    p = sub.add_parser("ptychi", help="pty-chi on the same files (bench/ptychi_runner.py in a venv with torch)")
    p.add_argument("dir")
    p.add_argument("--python", default=sys.executable, help="interpreter with ptychi, torch and tomofuse")
    p.add_argument("--members", default=f"0-{MEMBERS - 1}")
    p.add_argument("--algos", default="dm,lsqml,dm+lsqml")
    p.add_argument("--dm", type=int, default=200)
    p.add_argument("--ml", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("table")
    t.add_argument("dir")
    args = ap.parse_args(argv)
    d = Path(args.dir)
    if args.cmd in ("build", "run", "ptychi"):
        members = []  # "0-11", "1,4,11" or "0-3,7"
        for part in args.members.split(","):
            lo, _, hi = part.partition("-")
            members.extend(range(int(lo), int(hi or lo) + 1))
    if args.cmd == "build":
        d.mkdir(parents=True, exist_ok=True)
        for i in members:
            t0 = time.perf_counter()
            case = make_member(i)
            np.savez(d / f"m{i:02d}.npz", **case)
            print(f"m{i:02d} {case['params']} ({time.perf_counter() - t0:.1f} s)", flush=True)
        return
    if args.cmd == "run":
        opts = json.loads(args.options)
        kw = {}
        if "subpixel_steps" in opts:
            kw["subpixel_steps"] = opts["subpixel_steps"]
        if "dm" in opts:
            kw["dm"] = ptycho.DMOptions(**opts["dm"])
        if "ml" in opts:
            kw["ml"] = ptycho.MLOptions(**opts["ml"])
        if "holdout" in opts:
            ho = opts["holdout"]
            kw["holdout"] = ptycho.HoldOut(**ho) if isinstance(ho, dict) else bool(ho)
        if "refine_positions" in opts:
            rp = opts["refine_positions"]
            kw["refine_positions"] = ptycho.PositionRefinement(**rp) if isinstance(rp, dict) else bool(rp)
        out = d / "runs.jsonl"
        for i in members:
            case = dict(np.load(d / f"m{i:02d}.npz"))
            res = run_member(case, dm_iters=args.dm, ml_iters=args.ml, threads=args.threads, **kw)
            res.update(tag=args.tag, member=i, options=opts)
            with open(out, "a") as f:
                f.write(json.dumps(res) + "\n")
            marks = " ".join(f"{k}={v:.3f}" for k, v in res["marks"].items())
            print(f"{args.tag} m{i:02d}: {marks} final={res['final']:.3f} ({res['seconds']:.0f} s)", flush=True)
        return
    if args.cmd == "ptychi":
        run_ptychi(d, members, python=args.python, algos=args.algos, dm=args.dm, ml=args.ml, threads=args.threads)
        return
    rows = [json.loads(line) for line in open(d / "runs.jsonl")]
    tags = list(dict.fromkeys(r["tag"] for r in rows))
    for tag in tags:
        sel = [r for r in rows if r["tag"] == tag]
        fin = np.array([r["final"] for r in sel])
        print(f"{tag}: n={len(sel)} median {np.median(fin):.3f} worst {fin.max():.3f}  " +
              " ".join(f"m{r['member']:02d}={r['final']:.3f}" for r in sel))


if __name__ == "__main__":
    sys.exit(main())
