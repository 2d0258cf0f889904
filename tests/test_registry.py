"""get_backend / available_backends: built-ins, 'package.module:attr', entry points."""
import sys
import textwrap

import numpy as np
import pytest

import reference as R
from implementations import ENTRY_POINT_GROUP, available_backends, get_backend


def test_builtins_listed_and_named():
    names = available_backends()
    for n in ("reference", "numpy", "rtrl"):
        assert n in names
    for n in names:
        if n in ("reference", "rtrl"):
            b = get_backend(n)
        else:
            b = get_backend(n, dtype="float32")
            assert b.dtype == "float32"
        assert b.name == n and isinstance(b.dtype, str)


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="available: .*numpy"):
        get_backend("nonesuch")
    with pytest.raises(ValueError, match="cannot import 'no_such_module_xyz'.*available"):
        get_backend("no_such_module_xyz:Thing")
    with pytest.raises(ValueError, match="has no attribute"):
        get_backend("reference:NoSuchThing")


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype must be one of"):
        get_backend("numpy", dtype="float16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        get_backend("reference", dtype="float32")


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A tiny installed third-party package: a module with backend objects and an
    entry point registering one of them."""
    pkg = tmp_path / "thirdparty_rnn"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from implementations.backends import NumpyBackend

        class Mine(NumpyBackend):
            name = "mine"

        def make(dtype="float64"):
            return Mine(dtype=dtype)

        def make_without_dtype():
            return Mine()

        instance = Mine("float32")
        not_a_backend = object()
    """))
    dist = tmp_path / "thirdparty_rnn-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-rnn\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmine = thirdparty_rnn:Mine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("thirdparty_rnn", None)


def test_module_attr_forms(third_party):
    assert get_backend("thirdparty_rnn:Mine", dtype="float32").dtype == "float32"   # a class
    assert get_backend("thirdparty_rnn:make", dtype="float32").dtype == "float32"   # a callable
    assert get_backend("thirdparty_rnn:make_without_dtype").dtype == "float64"
    assert get_backend("thirdparty_rnn:instance").dtype == "float32"                # an object
    with pytest.raises(TypeError, match="lacks forward, bptt"):
        get_backend("thirdparty_rnn:not_a_backend")


def test_entry_point(third_party):
    assert "mine" in available_backends()
    b = get_backend("mine", dtype="float32")
    assert b.name == "mine"
    rng = np.random.default_rng(1)
    p = R.RNNParams(W_x=rng.normal(size=(2, 1)), W_h=rng.normal(size=(2, 2)) * 0.5, b_h=np.zeros(2),
                    W_y=rng.normal(size=(1, 2)), b_y=np.zeros(1))
    res = b.bptt(R.RNNSpec(), p, np.ones((3, 1, 1)), np.zeros((3, 1, 1)))
    assert res.grads.W_h.dtype == np.float64
