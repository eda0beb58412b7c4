"""Small regression problems for sharpness experiments, all with ``random_state``.

* :func:`load_digits_onehot`: a standardized subset of scikit-learn's bundled
  8x8 digits with one-hot targets, the real-data edge-of-stability setup
  (mean squared error on one-hot targets, full-batch gradient descent);
* :func:`make_teacher_student`: Gaussian inputs labelled by a random network;
* :func:`make_uv_example`: the single training example of the UV model.

Nothing is downloaded: the digits ship with scikit-learn.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._mlp_kernels import ACTIVATIONS, mlp_predict

__all__ = ["load_digits_onehot", "make_teacher_student", "make_uv_example"]


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left"), None],
        "n_classes": [Interval(Integral, 2, 10, closed="both")],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_digits_onehot(
    n_samples=500, *, n_classes=10, standardize=True, random_state=None
):
    """A random subset of the digits as a one-hot regression problem.

    Parameters
    ----------
    n_samples : int or None, default=500
        Size of the subset, drawn without replacement; None takes every
        image of the first ``n_classes`` digits (1797 for ten classes).
    n_classes : int, default=10
        Keep the digits ``0 .. n_classes - 1``.
    standardize : bool, default=True
        Center every pixel and scale it to unit variance over the subset
        (pixels constant over the subset become 0).  False keeps the raw
        intensities 0..16.
    random_state : int, RandomState instance or None, default=None
        Seeds the subset.

    Returns
    -------
    X : ndarray of shape (n_samples, 64)
        Pixel features.
    Y : ndarray of shape (n_samples, n_classes)
        One-hot targets: ``Y[i, k] = 1`` if image ``i`` shows digit ``k``.

    Raises
    ------
    ValueError
        If ``n_samples`` exceeds the number of available images.

    Examples
    --------
    >>> from sharpsk.datasets import load_digits_onehot
    >>> X, Y = load_digits_onehot(n_samples=300, random_state=0)
    >>> X.shape, Y.shape
    ((300, 64), (300, 10))
    >>> bool((Y.sum(axis=1) == 1).all()), round(float(X.std(axis=0).max()), 6)
    (True, 1.0)
    """
    data, target = load_digits(n_class=n_classes, return_X_y=True)
    n_available = data.shape[0]
    if n_samples is None:
        n_samples = n_available
    if n_samples > n_available:
        raise ValueError(
            f"n_samples={n_samples} exceeds the {n_available} digit images of "
            f"n_classes={n_classes}."
        )
    rng = check_random_state(random_state)
    idx = rng.permutation(n_available)[:n_samples]
    X = data[idx].astype(np.float64)
    if standardize:
        X = X - X.mean(axis=0)
        std = X.std(axis=0)
        X = X / np.where(std > 0, std, 1.0)
    Y = np.eye(n_classes)[target[idx]]
    return X, Y


@validate_params(
    {
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_outputs": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "noise": [Interval(Real, 0, None, closed="left")],
        "return_teacher": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_teacher_student(
    n_samples=200,
    n_features=10,
    *,
    n_outputs=1,
    hidden_layer_sizes=(32,),
    activation="tanh",
    noise=0.0,
    return_teacher=False,
    random_state=None,
):
    """Gaussian inputs labelled by a random fully connected teacher network.

    The teacher has weights ``W_l ~ N(0, 1 / fan_in)`` (standard
    parameterization, so its activations stay of order one), no biases, the
    given hidden activation and a linear output layer.

    Parameters
    ----------
    n_samples : int, default=200
        Number of samples.
    n_features : int, default=10
        Input dimension; inputs are standard normal.
    n_outputs : int, default=1
        Output dimension.
    hidden_layer_sizes : array-like of int, default=(32,)
        Hidden widths of the teacher; ``()`` gives a linear teacher.
    activation : {"identity", "logistic", "tanh", "relu"}, default="tanh"
        Teacher's hidden activation.
    noise : float, default=0.0
        Standard deviation of Gaussian noise added to the targets.
    return_teacher : bool, default=False
        Also return the teacher's weight matrices.
    random_state : int, RandomState instance or None, default=None
        Seeds inputs, teacher and noise.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Inputs.
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Targets; 1-D when ``n_outputs == 1``.
    coefs : list of ndarray
        The teacher's ``(fan_in, fan_out)`` weight matrices (only when
        ``return_teacher``); ``sharpsk._mlp_kernels.mlp_predict(coefs, None, X,
        activation)[-1]`` recomputes the noiseless targets.

    Examples
    --------
    >>> from sharpsk.datasets import make_teacher_student
    >>> X, y = make_teacher_student(n_samples=50, n_features=4, random_state=0)
    >>> X.shape, y.shape
    ((50, 4), (50,))
    >>> X, Y = make_teacher_student(50, 4, n_outputs=3, random_state=0)
    >>> Y.shape
    (50, 3)
    """
    hidden = [int(h) for h in np.atleast_1d(hidden_layer_sizes)]
    if any(h < 1 for h in hidden):
        raise ValueError(
            f"hidden_layer_sizes must contain positive integers, got "
            f"{hidden_layer_sizes!r}."
        )
    rng = check_random_state(random_state)
    X = rng.standard_normal((n_samples, n_features))
    sizes = [n_features, *hidden, n_outputs]
    coefs = [
        rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    y = mlp_predict(coefs, None, X, activation)[-1]
    if noise > 0:
        y = y + noise * rng.standard_normal(y.shape)
    if n_outputs == 1:
        y = y.ravel()
    return (X, y, coefs) if return_teacher else (X, y)


@validate_params(
    {
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "target": [Interval(Real, None, None, closed="neither")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_uv_example(n_features=10, *, target=1.0, random_state=None):
    """The single training example of the UV model: ``|x| = 1`` and target ``y``.

    With ``|x| = 1`` the UV model's ``kappa = s^2 |x|^2`` is ``s^2`` and its
    critical learning rate is ``eta_c = 1 / (s |y|)``.

    Parameters
    ----------
    n_features : int, default=10
        Input dimension ``d``.
    target : float, default=1.0
        The target ``y``.
    random_state : int, RandomState instance or None, default=None
        Seeds the direction of ``x``, uniform on the unit sphere.

    Returns
    -------
    X : ndarray of shape (1, n_features)
        The example, of unit norm.
    y : ndarray of shape (1,)
        Its target.

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk.datasets import make_uv_example
    >>> X, y = make_uv_example(5, target=2.0, random_state=0)
    >>> X.shape, y
    ((1, 5), array([2.]))
    >>> round(float(np.linalg.norm(X)), 12)
    1.0
    """
    rng = check_random_state(random_state)
    x = rng.standard_normal(n_features)
    norm = np.linalg.norm(x)
    while norm == 0:  # pragma: no cover - probability zero
        x = rng.standard_normal(n_features)
        norm = np.linalg.norm(x)
    return (x / norm).reshape(1, -1), np.array([float(target)])
