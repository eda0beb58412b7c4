"""The loss table: what a network's training loss needs from its outputs.

Each entry of :data:`LOSS_FUNCTIONS` (named as in scikit-learn's
``sklearn.neural_network._base.LOSS_FUNCTIONS``) pairs a loss with its
canonical output activation, like a generalized linear model:

==================== ============== ============================================
name                 prediction P   loss (mean over the ``n`` samples)
==================== ============== ============================================
``squared_error``    ``F``          ``sum((F - Y)**2) / (2 n)``
``log_loss``         ``softmax(F)`` ``-sum(Y * log softmax(F)) / n``
``binary_log_loss``  ``expit(F)``   ``sum(log(1 + exp(F)) - Y F) / n``
==================== ============== ============================================

``F`` of shape ``(n_samples, n_outputs)`` are the network's outputs (logits for
the log losses), ``Y`` the targets (rows of probabilities for ``log_loss``,
usually one-hot; a single column in ``[0, 1]`` for ``binary_log_loss``).  With
the canonical link the gradient with respect to the outputs is always the
*residual* ``(P - Y) / n``, and the output-space Hessian depends on ``P``
only:

* ``squared_error``: ``R / n``;
* ``log_loss``: ``(diag(p) - p p^T) R / n`` per sample;
* ``binary_log_loss``: ``p (1 - p) R / n``.

These are the start of backpropagation and of the backward R-pass of a
Hessian-vector product; the Gauss-Newton product ``J^T H_out J v`` uses the
same output Hessian (it is positive semi-definite, so the Gauss-Newton matrix
is the exact "NTK part" of the Hessian for each of these losses).

Every entry also has an autograd reference of its value (``reference``), used
by the tests and by :func:`~sharpsk._mlp_kernels.mlp_loss`.
"""

from typing import NamedTuple

import autograd.numpy as anp
import numpy as np
from autograd.scipy.special import logsumexp as anp_logsumexp
from scipy.special import expit, log_expit, log_softmax, softmax

__all__ = ["LOSS_FUNCTIONS", "Loss", "get_loss"]


class Loss(NamedTuple):
    """One entry of :data:`LOSS_FUNCTIONS`: pure functions of arrays.

    Attributes
    ----------
    name : str
        Key in :data:`LOSS_FUNCTIONS`.
    out_activation : {"identity", "softmax", "logistic"}
        The canonical output activation (scikit-learn's ``out_activation_``).
    prediction : callable
        ``prediction(F) -> P``: the outputs mapped to the targets' space.
    value : callable
        ``value(F, Y) -> float``: the loss, evaluated stably from ``F``.
    gradient : callable
        ``gradient(P, Y) -> dL/dF`` of shape ``(n_samples, n_outputs)``.
    hessian_action : callable
        ``hessian_action(P, R) -> (d2L/dF2) R``, sample by sample.
    divergence_scale : callable
        ``divergence_scale(F, residual) -> float``: the magnitude the engine's
        divergence test compares with ``1e6`` times its initial value (or
        the targets' scale): ``max |F - Y|`` for the squared error, the
        largest ``|logit|`` for the log losses (their residual ``P - Y`` is
        bounded by 1, whatever the weights).
    reference : callable
        ``reference(F, Y)``: the value written with ``autograd.numpy``.
    """

    name: str
    out_activation: str
    prediction: object
    value: object
    gradient: object
    hessian_action: object
    divergence_scale: object
    reference: object


# --------------------------------------------------------------------------
# Shared by the canonical-link losses
# --------------------------------------------------------------------------
def _residual_gradient(P, Y):
    """``(P - Y) / n``: the output gradient of every canonical-link loss."""
    return (P - Y) / P.shape[0]


def _residual_scale(F, residual):
    return float(np.max(np.abs(residual)))


def _logit_scale(F, residual):
    return float(np.max(np.abs(F)))


# --------------------------------------------------------------------------
# Squared error
# --------------------------------------------------------------------------
def _identity(F):
    return F


def squared_error_value(F, Y):
    """``sum((F - Y)**2) / (2 n)``."""
    r = F - Y
    return 0.5 * float(np.sum(r * r)) / F.shape[0]


def squared_error_hessian_action(P, R):
    """``R / n``: the output Hessian is the identity over ``n``."""
    return R / P.shape[0]


def squared_error_reference(F, Y):
    r = F - Y
    return 0.5 * anp.sum(r * r) / F.shape[0]


# --------------------------------------------------------------------------
# Softmax cross-entropy
# --------------------------------------------------------------------------
def _softmax(F):
    return softmax(F, axis=1)


def log_loss_value(F, Y):
    """``-sum(Y * log softmax(F)) / n`` (stable for any finite logits)."""
    return -float(np.sum(Y * log_softmax(F, axis=1))) / F.shape[0]


def log_loss_hessian_action(P, R):
    """``(diag(p) - p p^T) r / n`` for every sample (row) ``p``, ``r``."""
    PR = P * R
    return (PR - P * PR.sum(axis=1, keepdims=True)) / P.shape[0]


def log_loss_reference(F, Y):
    log_p = F - anp_logsumexp(F, axis=1, keepdims=True)
    return -anp.sum(Y * log_p) / F.shape[0]


# --------------------------------------------------------------------------
# Binary cross-entropy with one logistic output
# --------------------------------------------------------------------------
def binary_log_loss_value(F, Y):
    """``-sum(Y log expit(F) + (1 - Y) log expit(-F)) / n``."""
    return -float(np.sum(Y * log_expit(F) + (1.0 - Y) * log_expit(-F))) / F.shape[0]


def binary_log_loss_hessian_action(P, R):
    """``p (1 - p) r / n``."""
    return P * (1.0 - P) * R / P.shape[0]


def binary_log_loss_reference(F, Y):
    return anp.sum(anp.logaddexp(0.0, F) - Y * F) / F.shape[0]


#: The losses by name (scikit-learn's names); see the module docstring.
LOSS_FUNCTIONS = {
    "squared_error": Loss(
        "squared_error",
        "identity",
        _identity,
        squared_error_value,
        _residual_gradient,
        squared_error_hessian_action,
        _residual_scale,
        squared_error_reference,
    ),
    "log_loss": Loss(
        "log_loss",
        "softmax",
        _softmax,
        log_loss_value,
        _residual_gradient,
        log_loss_hessian_action,
        _logit_scale,
        log_loss_reference,
    ),
    "binary_log_loss": Loss(
        "binary_log_loss",
        "logistic",
        expit,
        binary_log_loss_value,
        _residual_gradient,
        binary_log_loss_hessian_action,
        _logit_scale,
        binary_log_loss_reference,
    ),
}


def get_loss(loss):
    """The :class:`Loss` of a name in :data:`LOSS_FUNCTIONS` (or a Loss itself).

    Parameters
    ----------
    loss : str or Loss
        A key of :data:`LOSS_FUNCTIONS`.

    Returns
    -------
    loss : Loss

    Examples
    --------
    >>> import numpy as np
    >>> from sharpsk._losses import get_loss
    >>> ce = get_loss("log_loss")
    >>> F, Y = np.zeros((2, 4)), np.eye(4)[[0, 3]]
    >>> round(ce.value(F, Y), 6) == round(float(np.log(4)), 6)
    True
    >>> ce.gradient(ce.prediction(F), Y)[0]
    array([-0.375,  0.125,  0.125,  0.125])
    """
    if isinstance(loss, Loss):
        return loss
    try:
        return LOSS_FUNCTIONS[loss]
    except (KeyError, TypeError):
        raise ValueError(
            f"loss must be one of {sorted(LOSS_FUNCTIONS)}, got {loss!r}."
        ) from None
