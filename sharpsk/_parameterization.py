"""Width parameterizations: standard (SP), NTK and mean-field muP.

A network has layer sizes ``[d, n_1, ..., n_{L-1}, n_out]``; layer ``l``
(0-based) maps ``fan_in = sizes[l]`` to ``fan_out = sizes[l + 1]``.  Every layer
has trainable weights ``theta_l ~ N(0, (init_scale * init_std_l)**2)``, the
forward pass uses ``W_l = multiplier_l * theta_l`` and gradient descent updates
``theta_l`` with step ``learning_rate * lr_scale_l``.  A parameterization is
the three per-layer factors as functions of width; :func:`layer_scalings`
computes them and :class:`ParameterizationTransformer` carries the choice
through a pipeline (and applies the input-layer ``1/sqrt(d)``).
"""

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import (
    BaseEstimator,
    OneToOneFeatureMixin,
    TransformerMixin,
    _fit_context,
    clone,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "PARAMETERIZATIONS",
    "ParameterizationTransformer",
    "layer_scalings",
    "parameterization_table",
    "resolve_parameterization",
]

PARAMETERIZATIONS = ("sp", "ntk", "mup")

_TABLE_COLUMNS = [
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


# --------------------------------------------------------------------------
# validation helpers (plain ValueError naming the argument)
# --------------------------------------------------------------------------
def _check_name(parameterization, name="parameterization"):
    if not isinstance(parameterization, str) or (
        parameterization not in PARAMETERIZATIONS
    ):
        raise ValueError(
            f"`{name}` must be one of {PARAMETERIZATIONS}, got {parameterization!r}."
        )
    return parameterization


def _check_positive_int(value, name, *, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a positive integer{extra}, got {value!r}.")
    return int(value)


def _check_sizes(sizes, name, *, min_len):
    """Return ``sizes`` as a 1-D int64 array of positive integers."""
    try:
        arr = np.asarray(sizes)
    except Exception as exc:  # ragged nested sequences and the like
        raise ValueError(f"`{name}` must be a 1-D sequence of integers.") from exc
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"`{name}` must be a 1-D sequence of positive integers, got {sizes!r}."
        )
    if arr.size < min_len:
        raise ValueError(
            f"`{name}` needs at least {min_len} entries, got {arr.size}: {sizes!r}."
        )
    if arr.dtype.kind == "f" and not (
        np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    ):
        raise ValueError(f"`{name}` must contain integers, got {sizes!r}.")
    if np.any(arr < 1):
        raise ValueError(f"`{name}` must contain positive integers, got {sizes!r}.")
    return arr.astype(np.int64)


def _roles(n_layers):
    # A single layer sees the data: it is labelled (and scaled as) the input.
    if n_layers == 1:
        return ["input"]
    return ["input"] + ["hidden"] * (n_layers - 2) + ["output"]


def _abc_exponents(parameterization, n_layers):
    """Width exponents ``(a, b, c)`` of multiplier, init std and lr scale.

    A factor equal to ``const * r**(-e)`` has exponent ``e``; width-independent
    factors get 0.  With no hidden layer no width enters: all NaN.
    """
    if n_layers == 1:
        nan = np.full(1, np.nan)
        return nan, nan.copy(), nan.copy()
    a = np.zeros(n_layers)
    b = np.zeros(n_layers)
    c = np.zeros(n_layers)
    if parameterization == "sp":
        b[1:] = 0.5  # 1/sqrt(fan_in); the input's 1/sqrt(d) is not a width
    elif parameterization == "ntk":
        a[1:] = 0.5
    else:  # mup
        a[1:-1] = 0.5
        a[-1] = 1.0
        c[:] = -1.0  # lr_scale grows like r on every layer
    return a, b, c


# --------------------------------------------------------------------------
# pure kernels
# --------------------------------------------------------------------------
def layer_scalings(parameterization, layer_sizes, *, base_width=None):
    """Per-layer multiplier, init std and learning-rate scale.

    Parameters
    ----------
    parameterization : {"sp", "ntk", "mup"}
        Standard, NTK or mean-field muP parameterization; see
        :class:`ParameterizationTransformer` for the table of rules.
    layer_sizes : sequence of int
        ``[d, n_1, ..., n_{L-1}, n_out]``, at least two positive integers.
    base_width : int or None, default=None
        Width at which NTK and muP coincide with the reference scale: widths
        enter through ``r = width / base_width`` (``None`` means 1).  Ignored by
        ``"sp"``, which is the absolute reference.

    Returns
    -------
    scalings : dict
        ``{"multiplier": (L,), "init_std": (L,), "lr_scale": (L,)}`` float
        arrays, ``L = len(layer_sizes) - 1``.  The overall ``init_scale``
        (sigma) is *not* applied: ``init_std`` is for sigma = 1.

    Raises
    ------
    ValueError
        If ``parameterization``, ``layer_sizes`` or ``base_width`` is invalid
        (the message names the argument).

    Examples
    --------
    >>> from sharpsk._parameterization import layer_scalings
    >>> sc = layer_scalings("mup", [10, 100, 1])
    >>> sc["multiplier"], sc["init_std"], sc["lr_scale"]
    (array([1.  , 0.01]), array([1., 1.]), array([100., 100.]))
    >>> layer_scalings("sp", [4, 16, 1])["init_std"]
    array([0.5 , 0.25])
    """
    parameterization = _check_name(parameterization)
    sizes = _check_sizes(layer_sizes, "layer_sizes", min_len=2)
    base = _check_positive_int(base_width, "base_width", allow_none=True) or 1
    fan_in = sizes[:-1].astype(float)
    fan_out = sizes[1:].astype(float)
    n_layers = fan_in.size
    multiplier = np.ones(n_layers)
    init_std = np.ones(n_layers)
    lr_scale = np.ones(n_layers)
    if parameterization == "sp":
        init_std = 1.0 / np.sqrt(fan_in)
    elif n_layers > 1:
        # With no hidden layer NTK and muP keep all factors at 1 (documented).
        ratio_in = fan_in[1:] / base
        if parameterization == "ntk":
            multiplier[1:] = 1.0 / np.sqrt(ratio_in)
        else:  # mup
            multiplier[1:-1] = 1.0 / np.sqrt(ratio_in[:-1])
            multiplier[-1] = 1.0 / ratio_in[-1]
            lr_scale[0] = fan_out[0] / base
            lr_scale[1:] = ratio_in
    return {"multiplier": multiplier, "init_std": init_std, "lr_scale": lr_scale}


def _layer_frame(parameterization, layer_sizes, base_width):
    sizes = _check_sizes(layer_sizes, "layer_sizes", min_len=2)
    sc = layer_scalings(parameterization, sizes, base_width=base_width)
    n_layers = sizes.size - 1
    a, b, c = _abc_exponents(parameterization, n_layers)
    return pd.DataFrame(
        {
            "layer": np.arange(n_layers),
            "role": _roles(n_layers),
            "fan_in": sizes[:-1],
            "fan_out": sizes[1:],
            "multiplier": sc["multiplier"],
            "init_std": sc["init_std"],
            "lr_scale": sc["lr_scale"],
            "a": a,
            "b": b,
            "c": c,
        },
        columns=_TABLE_COLUMNS,
    )


def parameterization_table(
    widths, *, d, n_out=1, parameterizations=PARAMETERIZATIONS, base_width=None
):
    """Per-layer scalings of ``[d, width, n_out]`` networks, as a tidy table.

    Shows what each parameterization does to each layer as the width grows.

    Parameters
    ----------
    widths : int or sequence of int
        Hidden widths ``n``; each gives the network ``[d, n, n_out]``.
    d : int
        Input dimension.
    n_out : int, default=1
        Output dimension.
    parameterizations : str or sequence of str, default=PARAMETERIZATIONS
        Names from ``("sp", "ntk", "mup")``.
    base_width : int or None, default=None
        See :func:`layer_scalings`.

    Returns
    -------
    table : pandas.DataFrame
        One row per parameterization x width x layer, with columns
        ``parameterization, width, layer, role, fan_in, fan_out, multiplier,
        init_std, lr_scale, a, b, c`` (see
        :meth:`ParameterizationTransformer.layer_table`).

    Examples
    --------
    >>> from sharpsk._parameterization import parameterization_table
    >>> t = parameterization_table([100], d=4, parameterizations=["ntk", "mup"])
    >>> t[["parameterization", "role", "multiplier", "lr_scale", "a", "c"]]
      parameterization    role  multiplier  lr_scale    a    c
    0              ntk   input        1.00       1.0  0.0  0.0
    1              ntk  output        0.10       1.0  0.5  0.0
    2              mup   input        1.00     100.0  0.0 -1.0
    3              mup  output        0.01     100.0  1.0 -1.0
    """
    widths = _check_sizes(np.atleast_1d(widths), "widths", min_len=1)
    d = _check_positive_int(d, "d")
    n_out = _check_positive_int(n_out, "n_out")
    if isinstance(parameterizations, str):
        parameterizations = (parameterizations,)
    names = [_check_name(p, "parameterizations") for p in parameterizations]
    if not names:
        raise ValueError("`parameterizations` must name at least one entry.")
    frames = []
    for name in names:
        for width in widths:
            frame = _layer_frame(name, [d, int(width), n_out], base_width)
            frame.insert(0, "width", int(width))
            frame.insert(0, "parameterization", name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------
# estimator
# --------------------------------------------------------------------------
class ParameterizationTransformer(
    OneToOneFeatureMixin, TransformerMixin, BaseEstimator
):
    """Width parameterization (SP, NTK or muP) and its input-layer scaling.

    Holds the per-layer width rules used by sharpsk's regressors
    (:meth:`get_scalings`) and, as a transformer, applies the input-layer
    factor ``1/sqrt(d)`` that the NTK and muP conventions take out of the
    first layer's initialization.

    Parameters
    ----------
    parameterization : {"sp", "ntk", "mup"}, default="ntk"
        ``"sp"`` standard, ``"ntk"`` neural-tangent, ``"mup"`` mean-field muP.
    base_width : int or None, default=None
        Reference width: NTK and muP use ``r = width / base_width``
        (``None`` means 1), so at ``width == base_width`` every factor of a
        hidden or output layer is 1.  ``"sp"`` ignores it.

    Attributes
    ----------
    n_features_in_ : int
        Number of features (the input dimension ``d``) seen in :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen in :meth:`fit`, when ``X`` has string column
        names.
    input_multiplier_ : float
        Factor applied by :meth:`transform`: ``1/sqrt(n_features_in_)`` for
        ``"ntk"`` and ``"mup"``, ``1.0`` for ``"sp"``.

    See Also
    --------
    layer_scalings : The per-layer factors as arrays.
    parameterization_table : Tidy table over widths and parameterizations.
    resolve_parameterization : Turn a name or instance into a transformer.

    Notes
    -----
    Layer ``l`` of ``[d, n_1, ..., n_out]`` maps ``fan_in = sizes[l]`` to
    ``fan_out = sizes[l + 1]``; its weights ``theta_l`` are drawn from
    ``N(0, (init_scale * init_std_l)**2)``, the forward pass uses
    ``W_l = multiplier_l * theta_l`` and gradient descent steps ``theta_l``
    with ``learning_rate * lr_scale_l``.  With ``r = width / base_width``
    (``fan_out`` is the width of the input layer, ``fan_in`` of later ones):

    ========  ======  ==============  ==============  ================
    name      layer   multiplier      init_std        lr_scale
    ========  ======  ==============  ==============  ================
    ``sp``    input   1               1/sqrt(d)       1
    ``sp``    later   1               1/sqrt(fan_in)  1
    ``ntk``   input   1               1               1
    ``ntk``   later   1/sqrt(r)       1               1
    ``mup``   input   1               1               r (= fan_out/b)
    ``mup``   hidden  1/sqrt(r)       1               r (= fan_in/b)
    ``mup``   output  1/r             1               r (= fan_in/b)
    ========  ======  ==============  ==============  ================

    ``"sp"`` uses absolute widths (it ignores ``base_width``).  For the
    one-hidden-layer network ``[d, n, 1]`` the product of the multipliers is
    the UV model's output multiplier ``s``: 1 (SP), ``1/sqrt(n)`` (NTK),
    ``1/n`` (muP, with learning rate ``eta * n`` on both layers).  A network
    with no hidden layer, ``[d, n_out]``, has one layer that is both input and
    output (role ``"input"``): SP and NTK use the input rule, muP uses
    multiplier 1, init std 1 and lr scale 1.

    :meth:`layer_table` also reports abc exponents: ``multiplier = r**-a``,
    ``init_std = r**-b`` and ``lr_scale = r**-c`` up to width-independent
    constants, with ``r`` the layer's width as above; a constant factor has
    exponent 0 (in particular the input's ``1/sqrt(d)``: ``d`` is data, not
    width), and the single layer of a network with no hidden layer, where no
    width enters, has NaN.

    ========  ======  ====  ====  ====
    name      layer   a     b     c
    ========  ======  ====  ====  ====
    ``sp``    input   0     0     0
    ``sp``    later   0     1/2   0
    ``ntk``   input   0     0     0
    ``ntk``   later   1/2   0     0
    ``mup``   input   0     0     -1
    ``mup``   hidden  1/2   0     -1
    ``mup``   output  1     0     -1
    ========  ======  ====  ====  ====

    :meth:`transform` divides ``X`` by ``sqrt(n_features_in_)`` for
    ``"ntk"`` and ``"mup"``, completing the textbook first layer
    ``W x / sqrt(d)``, and returns a copy of ``X`` for ``"sp"``, whose
    ``1/sqrt(d)`` already sits in the initialization.  So::

        make_pipeline(ParameterizationTransformer("ntk"),
                      SomeRegressor(parameterization="ntk"))

    is the textbook NTK parameterization for inputs with O(1) coordinates,
    whereas the regressor alone treats ``X`` as already scaled (natural for
    the single-example UV model with ``|x| = 1``).

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk import ParameterizationTransformer
    >>> X = np.array([[2.0, 4.0, 6.0, 8.0], [0.0, 2.0, 0.0, -2.0]])
    >>> pt = ParameterizationTransformer("mup").fit(X)
    >>> pt.transform(X)
    array([[ 1.,  2.,  3.,  4.],
           [ 0.,  1.,  0., -1.]])
    >>> pt.get_scalings([4, 100, 1])["multiplier"]
    array([1.  , 0.01])
    >>> pt.layer_table([4, 100, 100, 1])[["role", "multiplier", "lr_scale"]]
         role  multiplier  lr_scale
    0   input        1.00     100.0
    1  hidden        0.10     100.0
    2  output        0.01     100.0
    """

    _parameter_constraints: dict = {
        "parameterization": [StrOptions(set(PARAMETERIZATIONS))],
        "base_width": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, parameterization="ntk", *, base_width=None):
        self.parameterization = parameterization
        self.base_width = base_width

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Record the input dimension ``d``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training inputs; only their number of features is used.
        y : None
            Ignored.

        Returns
        -------
        self : ParameterizationTransformer
            The fitted transformer.
        """
        X = validate_data(
            self, X, accept_sparse=("csr", "csc"), dtype=[np.float64, np.float32]
        )
        if self.parameterization == "sp":
            self.input_multiplier_ = 1.0
        else:
            # A Python float keeps float32 inputs float32 (NEP 50).
            self.input_multiplier_ = float(1.0 / np.sqrt(self.n_features_in_))
        return self

    def transform(self, X):
        """Apply the input-layer scaling.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Inputs with ``n_features_in_`` features.

        Returns
        -------
        X_new : {ndarray, sparse matrix} of shape (n_samples, n_features)
            ``X / sqrt(n_features_in_)`` for ``"ntk"`` and ``"mup"``, a copy of
            ``X`` for ``"sp"``.
        """
        check_is_fitted(self)
        X = validate_data(
            self,
            X,
            accept_sparse=("csr", "csc"),
            dtype=[np.float64, np.float32],
            reset=False,
        )
        if self.input_multiplier_ == 1.0:
            return X.copy()
        return X * self.input_multiplier_

    def get_scalings(self, layer_sizes):
        """Per-layer factors of this parameterization (no fit needed).

        Parameters
        ----------
        layer_sizes : sequence of int
            ``[d, n_1, ..., n_out]``.

        Returns
        -------
        scalings : dict
            Same as ``layer_scalings(self.parameterization, layer_sizes,
            base_width=self.base_width)``.
        """
        self._validate_params()
        return layer_scalings(
            self.parameterization, layer_sizes, base_width=self.base_width
        )

    def layer_table(self, layer_sizes):
        """One row per layer: role, fans, factors and abc exponents.

        Parameters
        ----------
        layer_sizes : sequence of int
            ``[d, n_1, ..., n_out]``.

        Returns
        -------
        table : pandas.DataFrame
            Columns ``layer, role, fan_in, fan_out, multiplier, init_std,
            lr_scale, a, b, c``; ``role`` is ``"input"``, ``"hidden"`` or
            ``"output"``.  See the class Notes.
        """
        self._validate_params()
        return _layer_frame(self.parameterization, layer_sizes, self.base_width)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def resolve_parameterization(parameterization):
    """Turn a parameterization name or transformer into a transformer.

    Parameters
    ----------
    parameterization : {"sp", "ntk", "mup"} or ParameterizationTransformer
        A name, or an instance (cloned, so the caller's object is untouched).

    Returns
    -------
    transformer : ParameterizationTransformer
        A new, unfitted transformer with validated parameters.

    Raises
    ------
    ValueError
        If ``parameterization`` is neither a known name nor a
        :class:`ParameterizationTransformer`.

    Examples
    --------
    >>> from sharpsk._parameterization import resolve_parameterization
    >>> resolve_parameterization("mup")
    ParameterizationTransformer(parameterization='mup')
    """
    if isinstance(parameterization, ParameterizationTransformer):
        transformer = clone(parameterization)
    elif isinstance(parameterization, str) and parameterization in PARAMETERIZATIONS:
        transformer = ParameterizationTransformer(parameterization)
    else:
        raise ValueError(
            f"`parameterization` must be one of {PARAMETERIZATIONS} or a "
            f"ParameterizationTransformer, got {parameterization!r}."
        )
    transformer._validate_params()
    return transformer


# Constraint for estimators that take a ``parameterization`` parameter.
_PARAMETERIZATION_CONSTRAINT = [
    StrOptions(set(PARAMETERIZATIONS)),
    ParameterizationTransformer,
]
