"""The package's structure, checked on its own source: module boundaries, import cycles, lazy
subpackages and the one vocabulary of the public API (CONTRIBUTING.md, "Conventions").

- No module imports a private module or a private name of another subpackage
  (``from tomofuse.io._volume import _zarr`` in ptycho): a shared need has one public home
  (``tomofuse.io``) or a package-internal one at the top level (``tomofuse._validate``,
  ``tomofuse._dask``, ...).
- No import cycle between the package's modules, counting imports inside functions too.
- ``import tomofuse`` alone loads no SimpleITK and no Dask, and the subpackages load on
  first use (``tomofuse.tomo.fbp`` after ``import tomofuse``).
- No public function, method or class takes a parameter named outside the vocabulary.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tomofuse

PACKAGE = Path(tomofuse.__file__).resolve().parent


# ----------------------------------------------------------------------------------- the import graph


def _modules() -> dict[str, Path]:
    """Every Python module of the installed package, by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, str, int]]:
    """``(target module, imported name or "", line)`` for every import of ``module`` into tomofuse."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tomofuse":
                    found.append((alias.name, "", node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            if target.split(".")[0] != "tomofuse":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES or sub == "tomofuse._core":
                    found.append((sub, "", node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
    return found


def _subpackage(module: str) -> str:
    """The subpackage a module belongs to (``tomofuse.io`` for ``tomofuse.io._cxi``), or ``tomofuse``."""
    parts = module.split(".")
    if len(parts) >= 2 and (PACKAGE / parts[1]).is_dir():
        return ".".join(parts[:2])
    return "tomofuse"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_module_table_is_complete():
    # the walk sees the whole package, subpackages included
    assert {"tomofuse", "tomofuse.io", "tomofuse.tomo", "tomofuse.register", "tomofuse.ptycho"} <= set(MODULES)
    assert len(MODULES) > 60


def test_no_private_imports_across_packages():
    bad = []
    for module in MODULES:
        home = _subpackage(module)
        for target, name, line in _imports(module):
            there = _subpackage(target)
            if there == "tomofuse" or there == home:
                continue  # top-level shared modules (tomofuse._validate, ...) and a package's own modules
            inner = target.split(".")[2:]
            if any(_private(p) for p in inner) or (name and _private(name)):
                bad.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports "
                           f"{target}{'.' + name if name else ''}")
    assert not bad, "private imports across packages:\n" + "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in _imports(module):
            while target not in MODULES and "." in target:  # a name defined in a package's __init__
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    # the checker itself on a graph with a known circle (a -> b -> c -> a) and a tail (d -> a)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(" <-> ".join(c) for c in cycles)


# ----------------------------------------------------------------------------------- lazy subpackages


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


HEAVY = ("SimpleITK", "dask", "distributed", "zarr", "itk")


def test_import_tomofuse_loads_no_simpleitk_or_dask():
    loaded = _run("import sys, tomofuse; print(sorted(m for m in sys.modules "
                  f"if m.split('.')[0] in {HEAVY!r} or (m.startswith('tomofuse.') and '._' not in m)))")
    assert loaded.strip() == "[]", f"import tomofuse loaded {loaded.strip()}"


def test_subpackages_load_on_first_use():
    out = _run("import sys, tomofuse\n"
               "f = tomofuse.tomo.fbp\n"
               "print('SimpleITK' in sys.modules, callable(f))\n"
               "r = tomofuse.register.register\n"
               "print('SimpleITK' in sys.modules, callable(r))\n"
               "print(sorted(n for n in dir(tomofuse) if not n.startswith('_')))")
    lines = out.splitlines()
    assert lines[0] == "False True"  # tomo needs no SimpleITK
    assert lines[1] == "True True"
    for name in ("acquire", "analysis", "distributed", "echem", "io", "materials", "phantom", "ptycho", "register",
                 "tomo", "Phase"):
        assert f"'{name}'" in lines[2]
    with pytest.raises(AttributeError, match="no_such_stage"):
        tomofuse.no_such_stage  # noqa: B018


# ----------------------------------------------------------------------------------- the vocabulary

#: Parameter names outside the vocabulary (CONTRIBUTING.md): ``threads`` (not nthreads / workers /
#: n_jobs), ``voxel_size`` / ``pixel_size`` (not spacing), US spelling (center, normalize, ...).
BANNED = ("nthreads", "n_threads", "num_threads", "workers", "n_jobs", "spacing", "centre", "normalis",
          "normalised", "colour", "analyse", "initialis", "regularis", "optimis", "neighbour")


def _public_callables():
    seen = set()
    names = sorted({m.split(".")[1] for m in MODULES if m.count(".") >= 1 and not _private(m.split(".")[1])})
    for sub in names:
        mod = importlib.import_module(f"tomofuse.{sub}")
        if sub == "cli":
            continue
        for name in getattr(mod, "__all__", [n for n in vars(mod) if not _private(n)]):
            obj = getattr(mod, name)
            if id(obj) in seen or not callable(obj):
                continue
            seen.add(id(obj))
            yield f"tomofuse.{sub}.{name}", obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not _private(attr) and (inspect.isfunction(member) or isinstance(member, (classmethod,
                                                                                                 staticmethod))):
                        yield f"tomofuse.{sub}.{name}.{attr}", getattr(obj, attr)
                if dataclasses.is_dataclass(obj):
                    for f in dataclasses.fields(obj):
                        yield f"tomofuse.{sub}.{name}.{f.name} (field)", f.name


#: A unit suffix on a length (``_m``, ``_m2``, ``_m3``): lengths are in meters without a suffix
#: (units in the docstrings); table columns and config keys may carry units, parameters may not.
UNIT_SUFFIX = re.compile(r"_m[23]?$")


def _banned(name: str) -> bool:
    return any(b in name.lower() for b in BANNED) or bool(UNIT_SUFFIX.search(name))


def test_vocabulary_checker_catches_banned_names():
    assert _banned("nthreads") and _banned("fixed_spacing") and _banned("centre") and _banned("normalise")
    assert not _banned("threads") and not _banned("voxel_size") and not _banned("center")
    assert _banned("min_volume_m3") and _banned("psf_sigma_m") and not _banned("energy_kev")


def test_public_parameters_follow_the_vocabulary():
    bad = []
    count = 0
    for qualname, obj in _public_callables():
        if isinstance(obj, str):  # a dataclass field
            count += 1
            if _banned(obj):
                bad.append(qualname)
            continue
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        for p in sig.parameters:
            count += 1
            if _banned(p):
                bad.append(f"{qualname}({p})")
    assert count > 300  # the walk reached the whole public API
    assert not bad, "parameters outside the vocabulary:\n" + "\n".join(bad)


def test_threads_means_the_same_everywhere():
    """Every public ``threads`` parameter defaults to None (the package default)."""
    bad = []
    for qualname, obj in _public_callables():
        if isinstance(obj, str):
            continue
        try:
            sig = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        p = sig.parameters.get("threads")
        if p is not None and p.default is not None:
            bad.append(f"{qualname}(threads={p.default!r})")
    assert not bad, "threads must default to None (the package default):\n" + "\n".join(bad)


def test_pkgutil_sees_the_same_subpackages():
    # the lazy loader's list (dir(tomofuse)) is the package's own subpackages
    names = {m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if not _private(m.name)}
    assert names <= set(dir(tomofuse))
