"""sharpsk.datasets: shapes, ground truth, reproducibility, bad input."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.datasets import load_digits
from sklearn.utils._param_validation import InvalidParameterError

from sharpsk import UVRegressor
from sharpsk._mlp_kernels import mlp_predict
from sharpsk.datasets import load_digits_onehot, make_teacher_student, make_uv_example


def test_digits_subset_is_standardized_one_hot():
    X, Y = load_digits_onehot(300, random_state=0)
    assert X.shape == (300, 64) and Y.shape == (300, 10)
    assert_array_equal(np.unique(Y), [0.0, 1.0])
    assert_array_equal(Y.sum(axis=1), 1.0)
    assert_allclose(X.mean(axis=0), 0.0, atol=1e-12)
    std = X.std(axis=0)
    assert np.all(np.isclose(std, 1.0, rtol=1e-12) | (std == 0))
    assert np.any(std == 0)  # blank border pixels stay 0, not NaN


def test_digits_rows_are_the_bundled_images():
    raw, labels = load_digits_onehot(50, standardize=False, random_state=3)
    data, target = load_digits(return_X_y=True)
    for row, onehot in zip(raw, labels, strict=True):
        matches = np.flatnonzero((data == row).all(axis=1))
        assert matches.size >= 1
        assert np.argmax(onehot) in target[matches]
    # Standardizing is a per-pixel affine map of the same subset.
    X, Y = load_digits_onehot(50, random_state=3)
    assert_array_equal(Y, labels)
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    assert_allclose(X * np.where(std > 0, std, 1.0) + mean, raw, atol=1e-12)


def test_digits_options_and_reproducibility():
    a, b = (
        load_digits_onehot(100, random_state=1),
        load_digits_onehot(100, random_state=1),
    )
    assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], load_digits_onehot(100, random_state=2)[0])
    X, Y = load_digits_onehot(None, n_classes=3, random_state=0)
    n_three = np.isin(load_digits().target, [0, 1, 2]).sum()
    assert X.shape == (n_three, 64) and Y.shape == (n_three, 3)
    assert_array_equal(Y.sum(axis=0) > 0, True)
    with pytest.raises(ValueError, match="n_samples=400 exceeds"):
        load_digits_onehot(400, n_classes=2)
    with pytest.raises(InvalidParameterError, match="n_classes"):
        load_digits_onehot(10, n_classes=11)


def test_teacher_student_targets_come_from_the_teacher():
    X, y, coefs = make_teacher_student(
        80, 5, hidden_layer_sizes=(7, 6), return_teacher=True, random_state=0
    )
    assert X.shape == (80, 5) and y.shape == (80,)
    assert [W.shape for W in coefs] == [(5, 7), (7, 6), (6, 1)]
    assert_allclose(y, mlp_predict(coefs, None, X, "tanh")[-1].ravel(), rtol=1e-14)
    # Same seed, noise added on top of the same teacher and inputs.
    Xn, yn = make_teacher_student(
        80, 5, hidden_layer_sizes=(7, 6), noise=0.1, random_state=0
    )
    assert_array_equal(Xn, X)
    assert 0.05 < np.std(yn - y) < 0.15
    X2, Y2 = make_teacher_student(20, 3, n_outputs=4, activation="relu", random_state=1)
    assert Y2.shape == (20, 4)
    Xl, yl, (W,) = make_teacher_student(
        30, 3, hidden_layer_sizes=(), return_teacher=True, random_state=2
    )
    assert_allclose(yl, Xl @ W[:, 0], rtol=1e-14)  # linear teacher
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        make_teacher_student(10, 2, hidden_layer_sizes=(3, 0))
    with pytest.raises(InvalidParameterError, match="noise"):
        make_teacher_student(10, 2, noise=-1.0)


def test_uv_example_has_unit_norm_and_the_target():
    X, y = make_uv_example(6, target=-2.5, random_state=0)
    assert X.shape == (1, 6) and y.shape == (1,)
    assert_allclose(np.linalg.norm(X), 1.0, rtol=1e-14)
    assert y[0] == -2.5
    assert_array_equal(X, make_uv_example(6, target=3.0, random_state=0)[0])
    # |x| = 1: kappa = s^2 and eta_c = 1 / (s |y|) (NTK: s = 1/sqrt(width)).
    uv = UVRegressor(25, max_iter=0, random_state=0).fit(X, y)
    assert_allclose(uv.kappa_, 1 / 25, rtol=1e-12)
    assert_allclose(uv.critical_learning_rate_, 5 / 2.5, rtol=1e-12)
    with pytest.raises(InvalidParameterError, match="n_features"):
        make_uv_example(0)
