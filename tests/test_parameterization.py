"""Tests for the SP / NTK / muP parameterizations and their transformer."""

import pickle

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from sharpsk import ParameterizationTransformer
from sharpsk._parameterization import (
    PARAMETERIZATIONS,
    layer_scalings,
    parameterization_table,
    resolve_parameterization,
)

WIDTHS = [1, 3, 64, 1000]


# --------------------------------------------------------------------------
# exact closed forms
# --------------------------------------------------------------------------
def expected(name, sizes, base=1):
    """The lead's rules, written out layer by layer (independent of the code)."""
    mult, std, lr = [], [], []
    n_layers = len(sizes) - 1
    for layer in range(n_layers):
        fi, fo = sizes[layer], sizes[layer + 1]
        first, last = layer == 0, layer == n_layers - 1
        if name == "sp":
            m, s, c = 1.0, fi**-0.5, 1.0
        elif name == "ntk":
            m, s, c = (1.0 if first else (fi / base) ** -0.5), 1.0, 1.0
        elif n_layers == 1:
            m, s, c = 1.0, 1.0, 1.0
        elif first:
            m, s, c = 1.0, 1.0, fo / base
        elif last:
            m, s, c = base / fi, 1.0, fi / base
        else:
            m, s, c = (fi / base) ** -0.5, 1.0, fi / base
        mult.append(m)
        std.append(s)
        lr.append(c)
    return mult, std, lr


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("base", [None, 1, 16])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_layer_scalings_closed_form(name, width, base, depth):
    sizes = [7] + [width] * depth + [2]
    sc = layer_scalings(name, sizes, base_width=base)
    mult, std, lr = expected(name, sizes, base or 1)
    assert set(sc) == {"multiplier", "init_std", "lr_scale"}
    for key in sc:
        assert sc[key].shape == (depth + 1,)
        assert sc[key].dtype == np.float64
    assert_allclose(sc["multiplier"], mult, rtol=1e-14)
    assert_allclose(sc["init_std"], std, rtol=1e-14)
    assert_allclose(sc["lr_scale"], lr, rtol=1e-14)


@pytest.mark.parametrize("n", [1, 4, 100, 4096])
def test_uv_table_of_science_md(n):
    """[d, n, 1]: s = prod(multiplier) and init/lr match the UV table."""
    d = 9
    s_ref = {"sp": 1.0, "ntk": n**-0.5, "mup": 1.0 / n}
    std_ref = {"sp": [d**-0.5, n**-0.5], "ntk": [1.0, 1.0], "mup": [1.0, 1.0]}
    lr_ref = {"sp": [1.0, 1.0], "ntk": [1.0, 1.0], "mup": [n, n]}
    for name in PARAMETERIZATIONS:
        sc = layer_scalings(name, [d, n, 1])
        assert_allclose(np.prod(sc["multiplier"]), s_ref[name], rtol=1e-14)
        assert_allclose(sc["init_std"], std_ref[name], rtol=1e-14)
        assert_allclose(sc["lr_scale"], lr_ref[name], rtol=1e-14)


def test_base_width_is_the_reference_width():
    # At width == base_width NTK and muP have all factors 1 except the muP
    # input lr (fan_out / base = 1 too); SP ignores base_width.
    for name in ("ntk", "mup"):
        sc = layer_scalings(name, [5, 32, 32, 1], base_width=32)
        for key in sc:
            assert_allclose(sc[key], 1.0, rtol=1e-14)
    assert_allclose(
        layer_scalings("sp", [5, 32, 1], base_width=32)["init_std"],
        layer_scalings("sp", [5, 32, 1])["init_std"],
    )


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
def test_no_hidden_layer(name):
    d = 25
    sc = layer_scalings(name, [d, 3], base_width=4)
    assert_allclose(sc["multiplier"], [1.0])
    assert_allclose(sc["init_std"], [d**-0.5 if name == "sp" else 1.0])
    assert_allclose(sc["lr_scale"], [1.0])
    table = ParameterizationTransformer(name).layer_table([d, 3])
    assert list(table["role"]) == ["input"]
    assert table[["a", "b", "c"]].isna().all(axis=None)


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
@pytest.mark.parametrize("base", [None, 8])
def test_abc_exponents_match_the_values(name, base):
    """-log(factor ratio) / log(width ratio) between two widths = a, b, c."""
    n1, n2 = 64, 1024
    t1 = ParameterizationTransformer(name, base_width=base).layer_table(
        [10, n1, n1, n1, 3]
    )
    t2 = ParameterizationTransformer(name, base_width=base).layer_table(
        [10, n2, n2, n2, 3]
    )
    assert list(t1["role"]) == ["input", "hidden", "hidden", "output"]
    for col, exp in [("multiplier", "a"), ("init_std", "b"), ("lr_scale", "c")]:
        slope = -np.log(t2[col] / t1[col]) / np.log(n2 / n1)
        assert_allclose(slope, t1[exp], atol=1e-12)
        assert_array_equal(t1[exp], t2[exp])


def test_abc_table_values():
    t = {
        p: ParameterizationTransformer(p).layer_table([3, 8, 8, 1])
        for p in PARAMETERIZATIONS
    }
    assert_array_equal(t["sp"][["a", "b", "c"]], [[0, 0, 0], [0, 0.5, 0], [0, 0.5, 0]])
    assert_array_equal(t["ntk"][["a", "b", "c"]], [[0, 0, 0], [0.5, 0, 0], [0.5, 0, 0]])
    assert_array_equal(
        t["mup"][["a", "b", "c"]], [[0, 0, -1], [0.5, 0, -1], [1, 0, -1]]
    )


def test_layer_table_columns_and_fans():
    table = ParameterizationTransformer("mup").layer_table([6, 20, 30, 2])
    assert list(table.columns) == [
        "layer",
        "role",
        "fan_in",
        "fan_out",
        "multiplier",
        "init_std",
        "lr_scale",
        "a",
        "b",
        "c",
    ]
    assert_array_equal(table["layer"], [0, 1, 2])
    assert_array_equal(table["fan_in"], [6, 20, 30])
    assert_array_equal(table["fan_out"], [20, 30, 2])
    assert_allclose(table["multiplier"], [1.0, 20**-0.5, 1 / 30])
    assert_allclose(table["lr_scale"], [20.0, 20.0, 30.0])


def test_parameterization_table():
    widths = [16, 256, 4096]
    t = parameterization_table(widths, d=10, n_out=3, base_width=16)
    assert isinstance(t, pd.DataFrame)
    assert len(t) == len(PARAMETERIZATIONS) * len(widths) * 2
    assert list(t.columns[:2]) == ["parameterization", "width"]
    for (name, width), grp in t.groupby(["parameterization", "width"]):
        mult, std, lr = expected(name, [10, width, 3], base=16)
        assert_allclose(grp["multiplier"], mult, rtol=1e-14)
        assert_allclose(grp["init_std"], std, rtol=1e-14)
        assert_allclose(grp["lr_scale"], lr, rtol=1e-14)
        assert list(grp["role"]) == ["input", "output"]
        assert_array_equal(grp["fan_in"], [10, width])
    single = parameterization_table(100, d=4, parameterizations="mup")
    assert list(single["parameterization"]) == ["mup", "mup"]


@pytest.mark.parametrize(
    "kwargs, culprit",
    [
        (dict(widths=[0, 4], d=3), "widths"),
        (dict(widths=[], d=3), "widths"),
        (dict(widths=[4], d=0), "`d`"),
        (dict(widths=[4], d=3, n_out=2.5), "n_out"),
        (dict(widths=[4], d=3, parameterizations=["sp", "abc"]), "parameterizations"),
        (dict(widths=[4], d=3, parameterizations=[]), "parameterizations"),
        (dict(widths=[4], d=3, base_width=0), "base_width"),
    ],
)
def test_parameterization_table_bad_input(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        parameterization_table(**kwargs)


@pytest.mark.parametrize(
    "sizes",
    [
        [],
        [5],
        5,
        [5, 0],
        [5, -3, 1],
        [5, 2.5, 1],
        [[5, 4], [4, 1]],
        ["a", "b"],
        [5, np.nan],
    ],
)
def test_bad_layer_sizes(sizes):
    with pytest.raises(ValueError, match="layer_sizes"):
        layer_scalings("ntk", sizes)
    with pytest.raises(ValueError, match="layer_sizes"):
        ParameterizationTransformer("mup").get_scalings(sizes)
    with pytest.raises(ValueError, match="layer_sizes"):
        ParameterizationTransformer("sp").layer_table(sizes)


def test_integer_valued_layer_sizes_accepted():
    a = layer_scalings("mup", np.array([4.0, 16.0, 1.0]))
    b = layer_scalings("mup", (np.int32(4), 16, 1))
    for key in a:
        assert_allclose(a[key], b[key])


@pytest.mark.parametrize("bad", ["NTK", "mf", None, 1])
def test_bad_parameterization_name(bad):
    with pytest.raises(ValueError, match="parameterization"):
        layer_scalings(bad, [3, 4, 1])


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "64"])
def test_bad_base_width(bad):
    with pytest.raises(ValueError, match="base_width"):
        layer_scalings("ntk", [3, 4, 1], base_width=bad)


# --------------------------------------------------------------------------
# coordinate facts (Monte Carlo with fixed seeds)
# --------------------------------------------------------------------------
def init_params(rng, sc, sizes):
    return [
        rng.normal(0.0, sc["init_std"][k], size=(sizes[k + 1], sizes[k]))
        for k in range(len(sizes) - 1)
    ]


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
def test_first_preactivation_is_order_one(name):
    """std of W_0 transform(x) is 1 whatever d and width (x ~ N(0, 1) coords)."""
    rng = np.random.default_rng(0)
    for d in (10, 100, 1000):
        X = rng.normal(size=(20, d))
        Xt = ParameterizationTransformer(name).fit_transform(X)
        for width in (64, 512):
            sc = layer_scalings(name, [d, width, 1])
            theta0 = rng.normal(0.0, sc["init_std"][0], size=(width, d))
            h = sc["multiplier"][0] * Xt @ theta0.T
            assert_allclose(h.std(), 1.0, rtol=0.1)


def _output_std_at_init(name, width, d=16, n_draws=1500, seed=0):
    # Same input at every width; fresh weights per draw.
    x = np.random.default_rng(100).normal(size=(1, d))
    xt = ParameterizationTransformer(name).fit_transform(x)[0]
    rng = np.random.default_rng(seed)
    sizes = [d, width, 1]
    sc = layer_scalings(name, sizes)
    m0, m1 = sc["multiplier"]
    out = np.empty(n_draws)
    for k in range(n_draws):
        theta0, theta1 = init_params(rng, sc, sizes)
        out[k] = m1 * (theta1 @ (m0 * theta0 @ xt))[0]
    # exact variance: m1^2 s1^2 n m0^2 s0^2 |xt|^2
    var = m1**2 * sc["init_std"][1] ** 2 * width * (m0 * sc["init_std"][0]) ** 2
    return out.std(), np.sqrt(var * xt @ xt)


@pytest.mark.parametrize("name, exponent", [("sp", 0.0), ("ntk", 0.0), ("mup", -0.5)])
def test_output_at_init_scales_as_r_power(name, exponent):
    std64, exact64 = _output_std_at_init(name, 64, seed=1)
    std1024, exact1024 = _output_std_at_init(name, 1024, seed=2)
    assert_allclose(std64, exact64, rtol=0.1)
    assert_allclose(std1024, exact1024, rtol=0.1)
    assert_allclose(std1024 / std64, 16.0**exponent, rtol=0.1)


def one_step(name, width, d=16, lr=0.05, seed=0):
    """One GD step of a two-layer linear net from its init, on one example.

    f = m1 theta1 . h with h = m0 theta0 xt, loss (f - y)^2 / 2, so
    grad_theta1 = df m1 h, grad_theta0 = df m1 m0 outer(theta1, xt), and
    theta_l -= lr * lr_scale_l * grad_l.  Returns the first-order output
    change, the exact one, the bilinear second-order term, the feature change
    delta_h = m0 delta_theta0 xt and the residual df.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, d))
    xt = ParameterizationTransformer(name).fit_transform(x)[0]
    sizes = [d, width, 1]
    sc = layer_scalings(name, sizes)
    m0, m1 = sc["multiplier"]
    theta0, theta1 = init_params(rng, sc, sizes)
    theta1 = theta1[0]
    h = m0 * theta0 @ xt
    f = m1 * theta1 @ h
    df = f - 1.0
    g1 = df * m1 * h
    g0 = df * m1 * m0 * np.outer(theta1, xt)
    d1 = -lr * sc["lr_scale"][1] * g1
    d0 = -lr * sc["lr_scale"][0] * g0
    return {
        # <df/dtheta1, d1> + <df/dtheta0, d0>
        "delta_f": m1 * h @ d1 + m1 * m0 * theta1 @ d0 @ xt,
        "exact": m1 * (theta1 + d1) @ (m0 * (theta0 + d0) @ xt) - f,
        "second": m1 * m0 * d1 @ d0 @ xt,
        "delta_h": m0 * d0 @ xt,
        "df": df,
        "lr": lr,
    }


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
def test_one_step_gradient_formula(name):
    # A bilinear net is exactly first order + m1 m0 d1 . d0 xt.
    st = one_step(name, 128, lr=0.01)
    assert_allclose(st["delta_f"] + st["second"], st["exact"], rtol=1e-10)
    assert abs(st["second"]) < 0.1 * abs(st["delta_f"])


def _mean_over_seeds(name, width, key, d=16, n_seeds=40):
    out = []
    for seed in range(n_seeds):
        st = one_step(name, width, d=d, seed=seed)
        scale = -st["lr"] * st["df"]  # per unit of step and residual
        if key == "delta_f":
            out.append(st["delta_f"] / scale)
        else:  # rms coordinate of the feature change
            out.append(np.sqrt(np.mean((st["delta_h"] / scale) ** 2)))
    return np.mean(out)


def test_one_step_output_change_mup_width_independent_sp_grows():
    """delta_f = -lr df K, K = sum_l lr_scale_l |df/dtheta_l|^2 (a weighted NTK).

    E[K] = 2 for muP and NTK at any width; SP gives |x|^2 (n/d + 1), which
    grows like the width.
    """
    d = 16
    k = {
        (name, n): _mean_over_seeds(name, n, "delta_f", d=d)
        for name in PARAMETERIZATIONS
        for n in (64, 1024)
    }
    assert_allclose(k["mup", 64], 2.0, rtol=0.1)
    assert_allclose(k["mup", 1024] / k["mup", 64], 1.0, rtol=0.1)
    assert_allclose(k["ntk", 1024] / k["ntk", 64], 1.0, rtol=0.1)
    assert_allclose(k["sp", 1024] / k["sp", 64], (1024 + d) / (64 + d), rtol=0.1)


def test_one_step_feature_change_coordinate_check():
    """rms coordinate of delta h: O(1) in muP (feature learning), n^-1/2 in NTK."""
    rms = {
        (name, n): _mean_over_seeds(name, n, "delta_h")
        for name in ("mup", "ntk")
        for n in (64, 1024)
    }
    # muP: delta_h = -lr df theta1 |xt|^2, so its rms is close to |xt|^2 ~ 1.
    assert_allclose(rms["mup", 1024], 1.0, rtol=0.15)
    assert_allclose(rms["mup", 1024] / rms["mup", 64], 1.0, rtol=0.1)
    assert_allclose(rms["ntk", 1024] / rms["ntk", 64], 0.25, rtol=0.1)


# --------------------------------------------------------------------------
# the transformer
# --------------------------------------------------------------------------
@pytest.fixture
def X():
    return np.random.default_rng(3).normal(size=(6, 9))


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
def test_transform_values(name, X):
    pt = ParameterizationTransformer(name)
    Xt = pt.fit(X).transform(X)
    factor = 1.0 if name == "sp" else 1.0 / 3.0
    assert pt.n_features_in_ == 9
    assert pt.input_multiplier_ == factor
    assert_allclose(Xt, X * factor, rtol=1e-15)
    assert not np.shares_memory(Xt, X)
    assert_allclose(ParameterizationTransformer(name).fit_transform(X), Xt)


def test_transform_sparse_and_float32(X):
    Xs = sparse.csr_matrix(X)
    Xt = ParameterizationTransformer("ntk").fit(Xs).transform(Xs)
    assert sparse.issparse(Xt)
    assert_allclose(Xt.toarray(), X / 3.0)
    X32 = X.astype(np.float32)
    assert ParameterizationTransformer("mup").fit_transform(X32).dtype == np.float32
    assert ParameterizationTransformer("sp").fit_transform(X32).dtype == np.float32


def test_feature_names(X):
    cols = [f"f{i}" for i in range(9)]
    df = pd.DataFrame(X, columns=cols)
    pt = ParameterizationTransformer("mup").fit(df)
    assert_array_equal(pt.feature_names_in_, cols)
    assert_array_equal(pt.get_feature_names_out(), cols)
    pt = ParameterizationTransformer("sp").fit(X)
    assert_array_equal(pt.get_feature_names_out(), [f"x{i}" for i in range(9)])
    out = ParameterizationTransformer("ntk").set_output(transform="pandas")
    assert list(out.fit_transform(df).columns) == cols


def test_pipeline(X):
    y = np.arange(6.0)
    pipe = make_pipeline(ParameterizationTransformer("ntk"), Ridge(alpha=0.3))
    pipe.fit(X, y)
    ref = Ridge(alpha=0.3).fit(X / 3.0, y)
    assert_allclose(pipe.predict(X), ref.predict(X / 3.0), rtol=1e-12)
    assert_array_equal(pipe[:-1].get_feature_names_out(), [f"x{i}" for i in range(9)])
    cloned = clone(pipe).set_params(parameterizationtransformer__parameterization="sp")
    cloned.fit(X, y)
    ref = Ridge(alpha=0.3).fit(X, y)
    assert_allclose(cloned.predict(X), ref.predict(X), rtol=1e-12)


def test_pickle_and_clone(X):
    pt = ParameterizationTransformer("mup", base_width=8).fit(X)
    restored = pickle.loads(pickle.dumps(pt))
    assert_allclose(restored.transform(X), pt.transform(X))
    assert restored.get_params() == pt.get_params()
    cl = clone(pt)
    assert cl.get_params() == {"parameterization": "mup", "base_width": 8}
    assert not hasattr(cl, "n_features_in_")


def test_bad_inputs(X):
    pt = ParameterizationTransformer("ntk")
    with pytest.raises(NotFittedError):
        pt.transform(X)
    Xnan = X.copy()
    Xnan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pt.fit(Xnan)
    with pytest.raises(ValueError, match="0 sample"):
        pt.fit(np.empty((0, 3)))
    with pytest.raises(ValueError, match="0 feature"):
        pt.fit(np.empty((3, 0)))
    pt.fit(X)
    with pytest.raises(ValueError, match="features"):
        pt.transform(X[:, :4])
    with pytest.raises(ValueError, match="NaN"):
        pt.transform(Xnan)


@pytest.mark.parametrize(
    "params, culprit",
    [
        (dict(parameterization="NTK"), "parameterization"),
        (dict(parameterization=None), "parameterization"),
        (dict(base_width=0), "base_width"),
        (dict(base_width=2.0), "base_width"),
    ],
)
def test_invalid_params(params, culprit, X):
    pt = ParameterizationTransformer(**params)
    with pytest.raises(InvalidParameterError, match=culprit):
        pt.fit(X)
    with pytest.raises(InvalidParameterError, match=culprit):
        pt.get_scalings([3, 4, 1])
    with pytest.raises(InvalidParameterError, match=culprit):
        pt.layer_table([3, 4, 1])


@pytest.mark.parametrize("name", PARAMETERIZATIONS)
@pytest.mark.parametrize("base", [None, 4])
def test_get_scalings_unfitted(name, base):
    pt = ParameterizationTransformer(name, base_width=base)
    got = pt.get_scalings([5, 12, 12, 2])
    ref = layer_scalings(name, [5, 12, 12, 2], base_width=base)
    for key in ref:
        assert_array_equal(got[key], ref[key])
    table = pt.layer_table([5, 12, 12, 2])
    assert_array_equal(table["multiplier"], ref["multiplier"])
    assert not hasattr(pt, "n_features_in_")


def test_resolve_parameterization():
    for name in PARAMETERIZATIONS:
        pt = resolve_parameterization(name)
        assert isinstance(pt, ParameterizationTransformer)
        assert pt.parameterization == name and pt.base_width is None
    orig = ParameterizationTransformer("mup", base_width=32).fit(np.ones((2, 4)))
    got = resolve_parameterization(orig)
    assert got is not orig
    assert got.get_params() == orig.get_params()
    assert orig.n_features_in_ == 4  # untouched
    for bad in ["NTK", None, 3, Ridge()]:
        with pytest.raises(ValueError, match="parameterization"):
            resolve_parameterization(bad)
    with pytest.raises(ValueError, match="base_width"):
        resolve_parameterization(ParameterizationTransformer("ntk", base_width=0))
