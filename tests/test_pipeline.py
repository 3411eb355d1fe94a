"""tomofuse.pipeline and ``tomofuse run``: raw simulated files to the report, the same numbers as the
stage functions called by hand; resume after kills; a changed parameter reruns its stage and the ones
after it only; a 2-worker Dask run equals the serial one; bad configs and inputs exit 2 naming the key
or the file."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tomofuse import pipeline
from tomofuse.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from pipeline_tools import by_hand, kill_and_resume, run_digest  # noqa: E402
from realdata import i13_scan  # noqa: E402

#: small enough for CI (~15 s a run on 2 cores), large enough for registration and segmentation to work;
#: seed 4: 13 particles, 6 of them clear of echem.margin_voxels (seed 3 had 2 and none: echem ran on nothing)
SIM = dict(shape=(32, 48, 48), seed=4, cycled=False, dm_iterations=30, ml_iterations=20, threads=2)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    return pipeline.simulate_raw(d, **SIM)


@pytest.fixture(scope="module")
def reference(raw):
    """One uninterrupted serial run (through the CLI)."""
    run_dir = raw.config.parent / "reference"
    assert main(["run", str(raw.config), "-o", str(run_dir), "-q"]) == 0
    return run_dir


def _write_config(path: Path, raw, **changes) -> Path:
    """The simulated config with ``section.key = value`` changes (paths absolute)."""
    import tomllib

    doc = tomllib.loads(raw.config.read_text())
    base = raw.config.parent
    for sec in doc.values():
        for k, v in list(sec.items()):
            if k in ("scans", "angles_file", "scan") and v:
                sec[k] = str(base / v)
    for key, value in changes.items():
        sec, name = key.split(".")
        if value is None:
            doc.setdefault(sec, {}).pop(name, None)
        else:
            doc.setdefault(sec, {})[name] = value
    from tomofuse.pipeline._config import _toml_value

    lines = []
    for sec, content in doc.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in content.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_equals_the_stages_by_hand(raw, reference):
    from tomofuse.io import read_volume

    hand = by_hand(raw.config)
    np.testing.assert_array_equal(read_volume(reference / "pxct/volume.h5")[0], hand["pxct"])
    np.testing.assert_array_equal(read_volume(reference / "txtm/volume.h5")[0], hand["txtm"])
    np.testing.assert_array_equal(read_volume(reference / "fuse/fused.h5")[0], hand["fused"])
    with h5py.File(reference / "segment/segmentation.h5") as f:
        np.testing.assert_array_equal(f["labels"][()], hand["labels"])
    with h5py.File(reference / "particles/particles.h5") as f:
        np.testing.assert_array_equal(f["particles"][()], hand["particles"])
    summary = json.loads((reference / "summary.json").read_text())
    q = {x["name"]: x["measured"] for x in summary["quantities"]}
    assert q["fsc_resolution_pxct"] == hand["fsc"][0] and q["fsc_resolution_txtm"] == hand["fsc"][1]
    for k, v in hand["coverage"].items():
        assert q[f"coverage_{k}_area_weighted"] == v
    for k, v in hand["phase_fractions"].items():
        assert q[f"volume_fraction_{k}"] == v
    assert q["particle_count"] == int(hand["particles"].max())
    # the echem stage on the largest particle clear of the margin (the fixture has some: the comparison must happen)
    assert hand["inner_particles"] > 0 and hand["iqr_ratio"] is not None
    assert q["soc_iqr_ratio_1.2C_over_0.4C"] == hand["iqr_ratio"]
    # the run directory: one folder + manifest per stage, resolved config, log, report
    top = json.loads((reference / "manifest.json").read_text())
    assert set(top["stages"]) == set(pipeline.STAGES)
    for s in pipeline.STAGES:
        m = json.loads((reference / s / "manifest.json").read_text())
        assert m["status"] == "done" and m["wall_s"] > 0 and m["peak_memory_bytes"] > 0
        assert set(m) >= {"parameter_hash", "inputs", "outputs", "versions", "start_utc", "end_utc", "cpu_s"}
    resolved = pipeline.load_config(reference / "config.resolved.toml")
    assert resolved["ptycho"]["dm_iterations"] == SIM["dm_iterations"] and resolved["txtm"]["delta_beta"] == 0.028
    assert (reference / "run.log").read_text().count("done in") == len(pipeline.STAGES)
    assert "<table>" in (reference / "report.html").read_text()


def test_rerun_skips_everything_and_segment_change_reruns_downstream_only(raw, reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    r = pipeline.run(raw.config, output=run_dir)
    assert r.ran == [] and r.skipped == list(pipeline.STAGES)
    before = {s: json.loads((run_dir / s / "manifest.json").read_text())["start_utc"] for s in pipeline.STAGES}
    cfg = _write_config(tmp_path / "c.toml", raw, **{"segment.use_fsc_resolution": False})
    r = pipeline.run(cfg, output=run_dir)
    assert r.ran == ["segment", "particles", "coverage", "echem", "report"]
    assert r.skipped == ["ptycho", "pxct", "txtm", "fsc", "register", "fuse"]
    for s in r.skipped:
        assert json.loads((run_dir / s / "manifest.json").read_text())["start_utc"] == before[s]
    # --from forces a stage and the ones after it
    r = pipeline.run(cfg, output=run_dir, from_stage="echem")
    assert r.ran == ["echem", "report"]
    # a damaged output is noticed and its stage (and the later ones) rerun
    target = run_dir / "particles" / "particles.h5"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    r = pipeline.run(cfg, output=run_dir)
    assert r.ran == ["particles", "coverage", "echem", "report"]
    # one stage as a subcommand (same code path); `tomofuse segment CONFIG` is the stage, not the file tool
    starts = {s: json.loads((run_dir / s / "manifest.json").read_text())["start_utc"] for s in pipeline.STAGES}
    assert main(["segment", str(cfg), "-o", str(run_dir), "-q"]) == 0
    assert main(["coverage", str(cfg), "-o", str(run_dir), "-q"]) == 0
    after = {s: json.loads((run_dir / s / "manifest.json").read_text())["start_utc"] for s in pipeline.STAGES}
    assert [s for s in pipeline.STAGES if after[s] != starts[s]] == ["segment", "coverage"]


def test_an_entered_segmentation_is_what_the_report_draws(raw, reference, tmp_path, monkeypatch):
    """A segmentation of one's own entered in the config after a full run: the later stages and the report's
    figures read it, not the segment folder the earlier run left (the report drew the stale labels with the new
    particles, and failed when a particle id fell off their silicon)."""
    from tomofuse import Phase
    from tomofuse import report as rp
    from tomofuse.pipeline._figures import run_figures
    from tomofuse.segment import load_segmentation, save_segmentation

    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    seg, _ = load_segmentation(reference / "segment" / "segmentation.h5")
    mine = seg.labels.copy()
    top = mine[:3]
    top[top == Phase.PORE] = Phase.CBD  # another segmentation of the same volume
    entered = tmp_path / "mine.h5"
    save_segmentation(entered, type(seg)(labels=mine, valid=seg.valid, thresholds=seg.thresholds,
                                         channels=seg.channels, voxel_size=seg.voxel_size, cycled=seg.cycled))
    cfg = _write_config(tmp_path / "c.toml", raw, **{"segment.labels": str(entered)})
    r = pipeline.run(cfg, output=run_dir)
    assert r.ran[:3] == ["particles", "coverage", "echem"] and r.ran[-1] == "report"
    drawn = []
    real = rp.segmentation_overlay
    monkeypatch.setattr(rp, "segmentation_overlay", lambda pxct, labels, **kw: (drawn.append(labels),
                                                                                   real(pxct, labels, **kw))[1])
    run_figures(run_dir)
    assert len(drawn) == 1
    np.testing.assert_array_equal(drawn[0], mine)


def test_kill_and_resume_is_bit_identical(raw, reference, tmp_path):
    """SIGKILL inside the ptychographic series, during a file write and in the registration; then finish."""
    run_dir = tmp_path / "killed"
    seconds = {s: json.loads((reference / s / "manifest.json").read_text())["wall_s"] for s in pipeline.STAGES}
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    rep = kill_and_resume(raw.config, run_dir, targets=[("ptycho", "time"), ("ptycho", "write"), ("register", "time")],
                          stage_seconds=seconds, seed=1, env=env)
    assert len(rep["kills"]) >= 2, rep
    assert rep["kills"][0]["running"] == ["ptycho"] and 0 < rep["kills"][0]["ptycho_projections_done"] < 77
    assert rep["finished_stage_reruns"] == []
    assert run_digest(run_dir) == run_digest(reference)


@pytest.mark.slow
def test_two_dask_workers_equal_the_serial_run(raw, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        r = pipeline.run(raw.config, output=tmp_path / "dask", client=client)
    assert r.ran == list(pipeline.STAGES)
    assert json.loads((tmp_path / "dask" / "ptycho" / "manifest.json").read_text())["dask_workers"] == 2
    # the FBP slabs ran on the workers, which wrote the volumes as Zarr; the numbers are the serial run's
    for stage in ("pxct", "txtm"):
        assert (tmp_path / "dask" / stage / "volume.zarr").is_dir()
        assert not (tmp_path / "dask" / stage / "volume.h5").exists()
    digest = run_digest(tmp_path / "dask")
    assert "pxct/volume" in digest and "txtm/volume" in digest
    assert digest == run_digest(reference)


# ------------------------------------------------------------------------------ bad configs and inputs


def _truncated(src: Path, dst: Path) -> str:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return str(dst)


def _garbage(dst: Path) -> str:
    dst.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(4096))
    return str(dst)


def _volume_with_voxel(dst: Path, voxel: float) -> str:
    from tomofuse.io import write_volume

    write_volume(dst, np.zeros((8, 8, 8), np.float32), attrs={"voxel_size": voxel}, overwrite=True)
    return str(dst)


BAD = [
    # (name, changes(tmp, raw) -> dict, words the message must contain)
    ("unknown key", lambda t, r: {"segment.cycle": True}, ["segment.cycle", "did you mean 'cycled'"]),
    ("unknown section", lambda t, r: {"registr.seed": 1}, ["[registr]", "did you mean 'register'"]),
    ("wrong type", lambda t, r: {"ptycho.dm_iterations": "30"}, ["ptycho.dm_iterations", "expected int"]),
    ("out of range", lambda t, r: {"txtm.energy_kev": 500.0}, ["txtm.energy_kev", "<= 100"]),
    ("bad choice", lambda t, r: {"txtm.rings": "wavelet"}, ["txtm.rings", "one of"]),
    ("missing file", lambda t, r: {"txtm.scan": str(t / "nope.h5")}, ["txtm.scan", "nope.h5"]),
    ("no scans match", lambda t, r: {"ptycho.scans": str(t / "none_*.cxi")}, ["ptycho.scans", "none_*.cxi"]),
    ("wrong dataset path", lambda t, r: {"pxct.volume": _volume_with_voxel(t / "v.h5", 21.4e-9) + ":/wrong",
                                         "ptycho.scans": None}, ["pxct.volume", "/wrong"]),
    ("mismatched voxel sizes", lambda t, r: {"txtm.pixel_size_m": 30e-9}, ["txtm.pixel_size_m", "2.75e-08"]),
    ("mismatched volume voxel", lambda t, r: {"pxct.volume": _volume_with_voxel(t / "v.h5", 30e-9),
                                              "pxct.voxel_size_m": 21.4e-9, "ptycho.scans": None},
     ["pxct.volume", "voxel_size"]),
    ("truncated HDF5", lambda t, r: {"txtm.scan": _truncated(r.directory / "txtm.h5", t / "cut.h5")},
     ["txtm.scan", "cut.h5"]),
    ("corrupt HDF5", lambda t, r: {"txtm.scan": _garbage(t / "junk.h5")}, ["txtm.scan", "junk.h5"]),
    ("truncated scan in the series", lambda t, r: {"ptycho.scans": _series_with_truncated(t, r)},
     ["ptycho.scans", "proj_00005.cxi"]),
    ("angles do not match", lambda t, r: {"ptycho.angles_file": str(_angles(t, 5))}, ["ptycho.angles_file", "5 angles"]),
    ("unwritable output", lambda t, r: {"run.output": str(_file(t / "afile") / "run")}, ["run.output", "afile"]),
]


def _series_with_truncated(t: Path, raw) -> str:
    d = t / "series"
    shutil.copytree(raw.directory / "ptycho", d)
    _truncated(raw.directory / "ptycho" / "proj_00005.cxi", d / "proj_00005.cxi")
    return str(d / "proj_*.cxi")


def _angles(t: Path, n: int) -> Path:
    p = t / "angles.txt"
    p.write_text("\n".join(str(i) for i in range(n)))
    return p


def _file(p: Path) -> Path:
    p.write_text("not a directory")
    return p


@pytest.mark.parametrize("name, changes, words", BAD, ids=[b[0] for b in BAD])
def test_bad_config_or_input_exits_2_naming_the_key(raw, tmp_path, capsys, name, changes, words):
    changed = changes(tmp_path, raw)
    cfg = _write_config(tmp_path / "c.toml", raw, **changed)
    run_dir = tmp_path / "out"
    output = [] if "run.output" in changed else ["-o", str(run_dir)]
    for command in (["check", str(cfg)], ["run", str(cfg), "-q", *output]):
        rc = main(command)
        err = capsys.readouterr().err
        assert rc == 2, (command, err)
        lines = [ln for ln in err.strip().splitlines() if ln]
        assert len(lines) == 1 and "Traceback" not in err, err
        for w in words:
            assert w in lines[0], (w, lines[0])
    # nothing that looks complete: no stage manifest at all (the checks run before any stage)
    assert not list(run_dir.glob("*/manifest.json")) if run_dir.exists() else True
    print(f"{name}: {lines[0]}")


def test_failure_inside_a_stage_exits_1_naming_stage_and_log(raw, tmp_path, capsys, monkeypatch):
    from tomofuse.pipeline import _stages

    def boom(ctx):
        raise RuntimeError("simulated failure")

    stages = tuple(s if s.name != "txtm" else _stages.Stage("txtm", boom, s.upstream, s.sections, s.inputs, s.help)
                   for s in _stages.STAGE_LIST)
    monkeypatch.setattr(_stages, "STAGES_BY_NAME", {s.name: s for s in stages})
    from tomofuse.pipeline import _run

    monkeypatch.setattr(_run, "STAGES_BY_NAME", {s.name: s for s in stages})
    cfg = _write_config(tmp_path / "c.toml", raw, **{"ptycho.scans": None, "ptycho.angles_file": None})
    rc = main(["run", str(cfg), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "stage 'txtm' failed" in err and "run.log" in err and "Traceback" not in err
    m = json.loads((tmp_path / "out" / "txtm" / "manifest.json").read_text())
    assert m["status"] == "failed" and "simulated failure" in m["error"]


def test_check_estimates_memory_against_a_budget(raw, capsys):
    assert main(["check", str(raw.config), "--max-memory", "64GiB"]) == 0
    out = capsys.readouterr().out
    assert "config and inputs OK" in out and "77 scans" in out and "GiB" in out
    rep = pipeline.check(raw.config)
    assert set(rep.memory) == set(pipeline.STAGES) - {"report"} and all(v > 0 for v in rep.memory.values())
    # a budget below the largest estimate: exit 2, the stage named
    assert main(["check", str(raw.config), "--max-memory", "1MB"]) == 2
    captured = capsys.readouterr()
    assert "TOO LARGE" in captured.out and "more memory than available" in captured.err


def test_one_modality_run_and_template(raw, tmp_path, capsys):
    cfg = _write_config(tmp_path / "c.toml", raw, **{"ptycho.scans": None, "ptycho.angles_file": None})
    r = pipeline.run(cfg, output=tmp_path / "t")
    assert r.ran == ["txtm", "fsc", "report"]
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert [q["name"] for q in summary["quantities"]] == ["fsc_resolution_txtm"]
    for name in pipeline.TEMPLATES:
        assert main(["config", "--template", name]) == 0
        text = capsys.readouterr().out
        p = tmp_path / f"{name}.toml"
        p.write_text(text)
        cfg = pipeline.load_config(p)  # a template loads as it is
        assert cfg["txtm"]["delta_beta"] == 0.028
        for sec, keys in pipeline.SCHEMA.items():
            for key in keys:
                assert key in text




def test_one_modality_run_on_real_txtm_data(tmp_path):
    """Diamond I13-2 scan 24737 (TIFFs) written as Data Exchange, then a TXTM-only run: txtm, fsc, report.

    The rotation axis of this scan is ~6 px off the detector center (its README): the pipeline must
    find it, and the FSC between odd and even angles must cross the 1/2-bit curve below Nyquist.
    """
    from tomofuse.io import write_dxchange

    raw, flat, dark, theta = i13_scan()  # skips without the real data
    write_dxchange(tmp_path / "scan.h5", raw, flat=flat, dark=dark, theta=theta)
    (tmp_path / "c.toml").write_text('[txtm]\nscan = "scan.h5"\npixel_size_m = 1e-6\ndelta_beta = 0.0\n'
                                     '[run]\noutput = "run"\n')
    assert main(["run", str(tmp_path / "c.toml"), "-q"]) == 0
    res = json.loads((tmp_path / "run" / "txtm" / "results.json").read_text())
    fsc = json.loads((tmp_path / "run" / "fsc" / "results.json").read_text())
    assert 3 <= abs(res["center_px"] - raw.shape[2] / 2) <= 9, res
    assert fsc["txtm"]["crossed"] and fsc["txtm"]["resolution_m"] > 2e-6
    # the report shows the reconstruction itself (no fused volume in a one-modality run) and its FSC
    assert {p.name for p in (tmp_path / "run" / "figures").glob("*.png")} == {"fig1_txtm.png", "fig1_fsc.png"}
    print(f"I13 24737: center {res['center_px']:.2f} px ({res['center_px'] - raw.shape[2] / 2:+.2f} from the middle), "
          f"FSC 1/2-bit resolution {fsc['txtm']['resolution_m'] * 1e6:.2f} um (pixel 1 um nominal)")


def test_particle_defaults_are_the_librarys():
    # the config's defaults of the particle stage are label_particles' own (one source of truth)
    import inspect

    from tomofuse.segment import label_particles

    sig = inspect.signature(label_particles).parameters
    keys = pipeline.SCHEMA["particles"]
    for name in ("split", "neck_ratio", "mask_smoothing"):
        assert keys[name].default == sig[name].default, name


def test_pxct_rows_made_up_by_the_alignment():
    """Row r of an aligned projection is measured row r + dy, made up outside 0..rows-1: the PXCT stage
    reports the rows at each end that some projection's shift made up (the fuse stage leaves their
    slices out), against a row-by-row reference."""
    from tomofuse.pipeline._stages import _made_up_rows

    rng = np.random.default_rng(3)
    for rows in (5, 12, 40):
        for _ in range(50):
            dy = rng.choice([rng.uniform(-3, 3, 7), rng.integers(-2, 3, 7).astype(float), np.zeros(7)])
            shifts = np.stack([dy, rng.uniform(-2, 2, 7)], axis=1)
            seen = [r for r in range(rows) if np.all((r + dy >= 0) & (r + dy <= rows - 1))]
            if not seen:
                with pytest.raises(ValueError, match="pxct.align"):
                    _made_up_rows(shifts, rows)
                continue
            top, bottom = _made_up_rows(shifts, rows)
            assert (top, rows - 1 - bottom) == (seen[0], seen[-1]), (dy, rows)


def test_simulate_raw_again_keeps_the_txtm_truth(raw, tmp_path):
    """Rerun on existing files (the demo resuming) reuses the TXTM scan and still returns where its detector
    grid sat in the phantom (the demo's registration TRE needs it)."""
    import shutil

    again_dir = tmp_path / "again"
    shutil.copytree(raw.config.parent, again_dir, ignore=shutil.ignore_patterns("reference", "run*", "*kill*"))
    before = (again_dir / "raw" / "txtm.h5").stat().st_mtime_ns
    again = pipeline.simulate_raw(again_dir, **SIM)
    assert (again_dir / "raw" / "txtm.h5").stat().st_mtime_ns == before  # not simulated again
    assert raw.truth["txtm_origin_m"] is not None
    assert again.truth["txtm_origin_m"] == raw.truth["txtm_origin_m"]
