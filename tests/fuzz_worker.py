"""Crash-surviving execution of fuzz cases (tests/test_fuzz_core.py).

A case is a plain description -- entry point name, arguments with arrays given as *specs* (data,
layout, read-only) -- that a separate worker process turns into real arguments (non-contiguous,
negative-stride, Fortran-ordered, read-only or overlapping arrays do not survive pickling) and
calls. The parent sends one case at a time; when the worker dies (a segfault, an abort), the parent
counts a crash and starts a new worker, so one crash never stops the run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import traceback
from dataclasses import dataclass, field

import numpy as np

# ------------------------------------------------------------------------------- array specs


@dataclass
class ArraySpec:
    """An array argument: `data` (C-contiguous) shown to the callee with `layout`."""

    data: np.ndarray
    layout: str = "c"        # c | strided | reversed | fortran | readonly | alias:<index>
    note: str = ""


@dataclass
class Case:
    entry: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    setup: dict = field(default_factory=dict)   # constructor arguments of a method's object


def materialize(value, made=None):
    """The real argument for a spec (recursively for lists/tuples/dicts)."""
    if isinstance(value, ArraySpec):
        a = value.data
        if value.layout == "strided":       # every other element of a twice-as-large array
            big = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype) if a.ndim else a.copy()
            if a.ndim:
                big[::2] = a
                return big[::2]
            return big
        if value.layout == "reversed":      # negative stride on the first axis, same values
            return a[::-1].copy()[::-1] if a.ndim else a.copy()
        if value.layout == "fortran":
            return np.asfortranarray(a)
        if value.layout == "readonly":
            b = a.copy()
            b.setflags(write=False)
            return b
        if value.layout.startswith("alias:") and made is not None:
            # share memory with an earlier argument (same bytes, this array's dtype and shape)
            other = made[int(value.layout.split(":")[1])]
            if isinstance(other, np.ndarray) and other.nbytes >= a.nbytes and a.nbytes > 0:
                flat = other.reshape(-1).view(np.uint8)[: a.nbytes]
                return flat.view(a.dtype).reshape(a.shape)
            return a.copy()
        return a.copy()
    if isinstance(value, (list, tuple)):
        return type(value)(materialize(v, made) for v in value)
    if isinstance(value, dict):
        return {k: materialize(v, made) for k, v in value.items()}
    return value


def _entries():
    from tomofuse import _core, analysis, ptycho, segment, tomo

    class State:  # the ML state object the binding reads attributes from
        pass

    def ml_state(arrays, prev_zg=0.0, nll=0.0, alpha=0.0):
        st = State()
        for k, v in arrays.items():
            setattr(st, k, v)
        st.prev_zg, st.nll, st.alpha = prev_zg, nll, alpha
        return st

    def method(cls, name):
        def call(*args, _setup, **kwargs):
            obj = getattr(_core, cls)(*_setup.get("args", ()), **_setup.get("kwargs", {}))
            if name == "__init__":
                return obj
            if "state" in kwargs:
                kwargs["state"] = ml_state(kwargs["state"])
            return getattr(obj, name)(*args, **kwargs)
        return call

    def mesh_method(name):
        def call(*args, _setup, **kwargs):
            mesh = _core.VoxelMesh(*_setup["args"], **_setup.get("kwargs", {}))
            if name == "__init__":
                return mesh.num_nodes, mesh.num_elements
            if name == "assemble":
                return mesh.assemble(*args, **kwargs)
            op = mesh.operator(*_setup.get("op_args", (1.0, 1.0)))
            return getattr(op, name)(*args, **kwargs)
        return call

    def plan_method(name):
        def call(*args, _setup, **kwargs):
            plan = _core.FFTPlan2D(*_setup["args"], **_setup.get("kwargs", {}))
            return plan if name == "__init__" else getattr(plan, name)(*args, **kwargs)
        return call

    e = {n: getattr(_core, n) for n in ("fft2", "filter_real_2d", "project", "backproject", "backproject_linear",
                                        "spread_rays_hermitian", "points_in_spheres", "trace_rays", "surface_elements",
                                        "unit_element_matrices", "set_default_threads", "gaussian_blur", "icm",
                                        "icm_energy", "shell_moves")}
    for m in ("__init__", "shifted_probes", "object_windows", "illumination", "exit_waves", "dm_iteration",
              "object_gather", "probe_gather", "ml_gradient", "ml_line_coefficients", "ml_iteration",
              "position_equations"):
        e[f"PtychoScan.{m}"] = method("PtychoScan", m)
    for m in ("__init__", "assemble", "matvec", "solve"):
        e[f"VoxelMesh.{m}"] = mesh_method(m)
    for m in ("__init__", "forward", "backward"):
        e[f"FFTPlan2D.{m}"] = plan_method(m)
    e.update({"tomo.fbp": tomo.fbp, "tomo.project": tomo.project, "tomo.backproject": tomo.backproject,
              "tomo.fbp_phase_derivative": tomo.fbp_phase_derivative, "tomo.paganin": tomo.paganin,
              "analysis.surface_coverage": analysis.surface_coverage, "ptycho.reconstruct": ptycho.reconstruct,
              "segment.label_particles": segment.label_particles})

    def segment_call(*args, **kwargs):
        result = segment.segment(*args, **kwargs)
        return result.labels, result.valid

    e["segment.segment"] = segment_call
    return e


def _summary(result):
    """Results back to the parent (arrays as arrays; objects by their type name)."""
    if isinstance(result, np.ndarray) or result is None or isinstance(result, (int, float, bool, str)):
        return result
    if isinstance(result, (tuple, list)):
        return type(result)(_summary(r) for r in result)
    if isinstance(result, dict):
        return {k: _summary(v) for k, v in result.items()}
    try:
        import pandas as pd
        if isinstance(result, pd.DataFrame):
            return result
    except ImportError:
        pass
    return f"<{type(result).__name__}>"


def _sanitized() -> bool:
    """A sanitizer runtime is loaded (.ci/sanitizers): ASan and TSan reserve terabytes of address
    space for their shadow memory, so an RLIMIT_AS would make every later mmap of theirs fail."""
    try:
        with open("/proc/self/maps") as maps:
            return any(("libasan" in line or "libtsan" in line) for line in maps)
    except OSError:
        return False


def serve(conn, address_space_limit):
    """Worker loop: run cases until the pipe closes."""
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if address_space_limit and not _sanitized():
        # A runaway allocation fails (MemoryError) instead of taking the machine's memory.
        resource.setrlimit(resource.RLIMIT_AS, (address_space_limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    import logging
    import warnings
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    entries = _entries()
    while True:
        try:
            case = conn.recv()
        except EOFError:
            return
        try:
            made = []
            args = []
            for a in case.args:
                v = materialize(a, made)
                made.append(v)
                args.append(v)
            kwargs = {k: materialize(v, made) for k, v in case.kwargs.items()}
            if case.setup:
                kwargs["_setup"] = materialize(case.setup, made)
            result = entries[case.entry](*args, **kwargs)
            conn.send(("ok", _summary(result), [a for a in made]))
        except BaseException as exc:  # noqa: BLE001 -- every outcome is reported
            conn.send(("raised", type(exc).__name__, [c.__name__ for c in type(exc).__mro__], str(exc),
                       traceback.format_exc(limit=3)))


class Runner:
    """Runs cases in a worker process; restarts it after a crash and counts crashes."""

    def __init__(self, address_space_limit=8 << 30):
        self.ctx = mp.get_context("spawn")
        self.limit = address_space_limit
        self.proc = None
        self.crashes = []

    def _start(self):
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=serve, args=(child, self.limit), daemon=True)
        self.proc.start()
        child.close()

    def run(self, case: Case, timeout=120.0):
        if self.proc is None or not self.proc.is_alive():
            self._start()
        try:
            self.conn.send(case)
            if not self.conn.poll(timeout):
                self.proc.kill()
                self.proc.join()
                self.proc = None
                self.crashes.append((case.entry, "timeout"))
                return ("crash", f"no answer within {timeout} s")
            return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.proc.join(timeout=10)
            code = self.proc.exitcode
            self.proc = None
            self.crashes.append((case.entry, code))
            return ("crash", f"worker died with exit code {code}")

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.close()
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()
