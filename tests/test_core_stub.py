"""tomofuse/_core.pyi describes tomofuse._core exactly: the same public names, and for every function
and method the same parameters (names, order, positional / keyword-only) and defaults.

The compiled module's signatures are read from the first line pybind11 writes into each docstring
(``name(arg: type, *, kw: type = default) -> result``), parsed as Python; the stub is parsed with
``ast``. Also: the stub and ``py.typed`` are installed next to the module.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

import tomofuse
from tomofuse import _core

STUB = Path(tomofuse.__file__).parent / "_core.pyi"


def _public(names):
    return {n for n in names if not n.startswith("_") or n == "__len__"}


def _stub_tree():
    return ast.parse(STUB.read_text())


def _value(node):
    """A default as a comparable value (math.inf for the name inf, Ellipsis for ...)."""
    if isinstance(node, ast.Name) and node.id == "inf":
        return math.inf
    return ast.literal_eval(node)


def _params(args: ast.arguments, drop_self: bool):
    """[(name, kind, default)] of a parsed signature; kind 'pos' or 'kw'."""
    pos = list(args.posonlyargs) + list(args.args)
    defaults = [None] * (len(pos) - len(args.defaults)) + list(args.defaults)
    out = [(a.arg, "pos", None if d is None else _value(d)) for a, d in zip(pos, defaults)]
    out += [(a.arg, "kw", None if d is None else _value(d)) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if drop_self and out and out[0][0] == "self":
        out = out[1:]
    return out


def _same(stub, runtime) -> bool:
    """Equal parameter lists; float defaults equal to float32 precision (pybind11 prints a float
    default of a C++ float parameter with its float32 rounding, e.g. 0.0010000000474974513)."""
    if len(stub) != len(runtime):
        return False
    for (n1, k1, d1), (n2, k2, d2) in zip(stub, runtime):
        if (n1, k1) != (n2, k2):
            return False
        if isinstance(d1, float) and isinstance(d2, float):
            if not (d1 == d2 or math.isclose(d1, d2, rel_tol=1e-7)):
                return False
        elif d1 != d2 or type(d1) is not type(d2):
            return False
    return True


def _runtime_params(obj, name: str, drop_self: bool):
    """Parameters from pybind11's signature line of obj's docstring."""
    first = (obj.__doc__ or "").strip().splitlines()[0]
    assert first.startswith(name + "("), f"{name}: no pybind11 signature line in its docstring: {first!r}"
    tree = ast.parse(f"def {first}: ...")
    return _params(tree.body[0].args, drop_self)


def _stub_functions(body):
    return {n.name: n for n in body if isinstance(n, ast.FunctionDef)}


def _stub_classes(tree):
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def _is_property(fn: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


def test_stub_and_py_typed_are_installed():
    assert STUB.is_file()
    assert (STUB.parent / "py.typed").is_file()


def test_stub_lists_exactly_the_module_names():
    tree = _stub_tree()
    stub_names = set(_stub_functions(tree.body)) | set(_stub_classes(tree))
    stub_names |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    module_names = _public(dir(_core)) - {"__len__"}
    stub_public = {n for n in stub_names if not n.startswith("_")}
    assert stub_public == module_names, (
        f"missing from the stub: {sorted(module_names - stub_public)}; "
        f"not in the module: {sorted(stub_public - module_names)}")


def _functions():
    tree = _stub_tree()
    return sorted(n for n in _stub_functions(tree.body) if not n.startswith("_"))


@pytest.mark.parametrize("name", _functions())
def test_function_signature_matches(name):
    stub = _stub_functions(_stub_tree().body)[name]
    want = _runtime_params(getattr(_core, name), name, drop_self=False)
    got = _params(stub.args, drop_self=False)
    assert _same(got, want), f"stub {got}\nmodule {want}"


def _pybind_classes():
    return sorted(n for n, c in _stub_classes(_stub_tree()).items()
                  if not issubclass(getattr(_core, n), BaseException))


@pytest.mark.parametrize("cls", _pybind_classes())
def test_class_members_and_signatures_match(cls):
    node = _stub_classes(_stub_tree())[cls]
    runtime = getattr(_core, cls)
    members = _stub_functions(node.body)
    assert _public(members) - {"__init__"} == _public(dir(runtime)), cls
    for name, fn in members.items():
        attr = getattr(runtime, name)
        if _is_property(fn):
            assert isinstance(attr, property), f"{cls}.{name} is a property in the stub only"
            continue
        assert not isinstance(attr, property), f"{cls}.{name} is a property in the module only"
        want = _runtime_params(attr, name, drop_self=True)
        got = _params(fn.args, drop_self=True)
        assert _same(got, want), f"{cls}.{name}: stub {got}\nmodule {want}"
