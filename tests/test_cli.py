"""The ``tomofuse`` command line."""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import tomofuse
from tomofuse.cli import main
from tomofuse.phantom import load


def _console_script():
    exe = Path(sys.executable).with_name("tomofuse")
    return str(exe) if exe.exists() else None


def _core_fft() -> str:
    from tomofuse import _core

    return _core.fft_backend()


def test_version_from_the_installed_console_script():
    script = _console_script()
    if script is None:
        pytest.skip("the tomofuse console script is not installed next to this interpreter")
    out = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    first, core = out.stdout.strip().splitlines()
    assert first == f"tomofuse {tomofuse.__version__}"
    assert core.startswith("core: FFT ") and _core_fft() in core
    assert tomofuse.__version__ != "0+unknown"


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "phantom" in text and "info" in text


def test_phantom_writes_h5_and_preview(tmp_path, capsys):
    out = tmp_path / "e.h5"
    rc = main(["phantom", "--shape", "40", "40", "40", "--voxel-size", "60e-9", "--seed", "2", "-q", "-o", str(out)])
    assert rc == 0
    e = load(out)
    assert e.labels.shape == (40, 40, 40) and e.seed == 2 and not e.cycled
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out
    with h5py.File(out) as f:
        assert f.attrs["program"] == "tomofuse.phantom.electrode"
    # no temporary files left next to the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.h5", "e.png"]
    # info prints attributes and datasets
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tomofuse_version" in text and "/labels: (40, 40, 40) uint8" in text


def test_phantom_rejects_unwritable_output(tmp_path, capsys):
    rc = main(["phantom", "--shape", "40", "40", "40", "--voxel-size", "60e-9", "-q",
               "-o", str(tmp_path / "missing" / "e.h5")])
    assert rc == 2
    assert "--output" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, word", [
    (["--voxel-size", "-1"], "voxel_size"),
    (["--porosity", "1.5"], "porosity"),
    (["--shape", "40", "40", "0"], "shape"),
])
def test_phantom_bad_arguments_fail_cleanly(tmp_path, capsys, args, word):
    base = ["phantom", "--shape", "40", "40", "40", "--voxel-size", "60e-9", "-q", "-o", str(tmp_path / "e.h5")]
    rc = main(base + args)
    assert rc == 2
    assert word in capsys.readouterr().err
    assert not (tmp_path / "e.h5").exists()


def test_preview_is_the_three_central_slices(tmp_path):
    from tomofuse.phantom import save_preview

    labels = np.zeros((10, 12, 14), dtype=np.uint8)
    labels[5] = 2
    path = tmp_path / "p.png"
    save_preview(labels, path, voxel_size=1e-8)
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100
    with pytest.raises(ValueError, match="3-D"):
        save_preview(labels[0], tmp_path / "q.png", voxel_size=1e-8)
    assert os.path.exists(path)


def test_analyze_coverage_csv_and_json(tmp_path, capsys):
    import json

    import pandas as pd

    out = tmp_path / "e.h5"
    assert main(["phantom", "--shape", "48", "48", "48", "--voxel-size", "50e-9", "--seed", "3", "--cycled",
                 "--no-preview", "-q", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["analyze", "coverage", str(out), "--thickness", "-o", str(tmp_path / "c.csv")]) == 0
    table = pd.read_csv(tmp_path / "c.csv", index_col="particle")
    e = load(out)
    assert sorted(table.index) == sorted(e.truth.index)
    np.testing.assert_allclose(table[["free", "cbd", "contact", "sei"]].sum(axis=1), 1.0, atol=1e-6)
    assert (table.loc[table.sei > 0, "mean_m"] > 0).all()
    assert "area-weighted" in capsys.readouterr().err
    assert main(["analyze", "coverage", f"{out}:/labels", "--particles", f"{out}:/particles",
                 "--voxel-size", "50e-9", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["voxel_size"] == 50e-9
    assert {p["particle"] for p in doc["particles"]} == set(e.truth.index)
    assert doc["particles"][0]["area_m2"] > 1e-14  # no rounding to zero
    assert set(doc["summary"]) == {"area_weighted", "particle_mean"}


def test_analyze_coverage_errors(tmp_path, capsys):
    np.save(tmp_path / "l.npy", np.zeros((8, 8, 8), dtype=np.uint8))
    assert main(["analyze", "coverage", str(tmp_path / "l.npy"), "--particles", str(tmp_path / "l.npy")]) == 2
    assert "--voxel-size" in capsys.readouterr().err
    assert main(["analyze", "coverage", str(tmp_path / "missing.h5:/labels")]) == 2
    assert "no such file" in capsys.readouterr().err


class _Stream:
    """A text stream that says whether it is a terminal."""

    def __init__(self, tty: bool):
        import io

        self.buf, self.tty = io.StringIO(), tty

    def isatty(self):
        return self.tty

    def write(self, text):
        return self.buf.write(text)

    def flush(self):
        pass


@pytest.mark.parametrize("tty", [False, True])
def test_progress_in_a_log_file_is_a_line_per_tenth(tty):
    """A batch job's log (stderr not a terminal) gets one line per tenth of a stage and a closing
    line, not a redrawn bar; a terminal gets the bar."""
    from tomofuse.cli import _StageBar

    stream = _Stream(tty)
    bar = _StageBar("[2/11] pxct", True, stream=stream)
    for i in range(2001):
        bar(i / 2000, f"slab {i // 100}")
    bar.close()
    text = stream.buf.getvalue()
    if tty:
        assert "\r" in text and "[2/11] pxct" in text
    else:
        lines = text.splitlines()
        assert "\r" not in text
        assert len(lines) == 12  # 0 %, 10 %, ..., 100 % and "done"
        assert lines[0].startswith("[2/11] pxct: slab 0:   0 %")
        assert lines[-2].startswith("[2/11] pxct: slab 20: 100 %")
        assert lines[-1].startswith("[2/11] pxct: done")
    quiet = _Stream(tty)
    bar = _StageBar("[2/11] pxct", False, stream=quiet)
    bar(0.5, "x")
    bar.close()
    assert quiet.buf.getvalue() == ""
