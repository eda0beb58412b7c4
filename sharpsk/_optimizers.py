"""Optimizers of the training engine, each with its stability threshold.

Small objects in the spirit of scikit-learn's
``neural_network/_stochastic_optimizers.py``, but functional: the state is a
dict of flat arrays that :meth:`Optimizer.update` returns anew, so a fit can
be continued (``warm_start``) and pickled, and the tangent map of the whole
state (parameters *and* optimizer state) is available for Lyapunov exponents.

Each optimizer knows the **stability threshold** of the quantity it is
linearly stable under (Cohen et al. 2021, 2022): on a quadratic with Hessian
``H`` the iteration is stable iff the tracked sharpness is below it.

* ``gd``: ``lambda_max(H) < 2 / eta``;
* ``momentum`` (heavy ball): ``lambda_max(H) < (2 + 2 beta) / eta``;
* ``nesterov``: ``lambda_max(H) < (2 + 2 beta) / ((1 + 2 beta) eta)``;
* ``rmsprop``: ``lambda_max(P^-1 H) < 2 / eta``;
* ``adam``: ``lambda_max(P^-1 H) < (2 + 2 beta_1) / ((1 - beta_1) eta)``.

``P`` is the diagonal preconditioner of the step: ``sqrt(s) + epsilon`` for
RMSProp, and for Adam ``(1 - beta_1^t) (sqrt(s_hat) + epsilon)`` with the
bias-corrected second moment ``s_hat`` (the momentum's bias correction is a
larger step, i.e. a smaller preconditioner), as in Cohen et al. (2022).
The thresholds of the adaptive methods hold for a frozen preconditioner.
"""

import numpy as np

__all__ = ["OPTIMIZERS", "make_optimizer"]


class Optimizer:
    """Base class: plain gradient descent ``theta <- theta - eta g``.

    Subclasses override :meth:`init_state`, :meth:`update`,
    :meth:`edge` and, when adaptive, :meth:`preconditioner` and
    :meth:`tangent`.
    """

    name = "gd"
    adaptive = False

    def init_state(self, n_params):
        """Optimizer state at step 0 (a dict of flat arrays and counters)."""
        return {}

    def update(self, theta, grad, eta, state):
        """One step: ``(new_theta, new_state)``; inputs are not modified."""
        return theta - eta * grad, state

    def edge(self):
        """``eta`` times the stability threshold (dimensionless)."""
        return 2.0

    def stability_threshold(self, eta):
        """The tracked sharpness above which a quadratic is unstable."""
        return self.edge() / np.asarray(eta, dtype=float)

    def preconditioner(self, state, grad):
        """Diagonal ``P`` of the step from ``state`` with ``grad`` (None: I)."""
        return None

    def tangent(self, vec, state, new_state, grad, hvp, eta):
        """Push a tangent vector of ``(theta, state)`` through one step.

        ``vec`` is the flat concatenation of ``delta theta`` and the tangents
        of the state arrays (:meth:`state_arrays` order); ``hvp`` is the
        Hessian product at ``theta``; ``state`` is the state before the step
        and ``new_state`` after it.
        """
        return vec - eta * hvp(vec)

    def state_arrays(self):
        """Names of the state arrays a tangent vector carries after theta."""
        return ()

    def get_params(self):
        return {}


class _Momentum(Optimizer):
    """Heavy ball: ``v <- beta v - eta g``, ``theta <- theta + v`` (sklearn's)."""

    name = "momentum"
    nesterov = False

    def __init__(self, momentum):
        self.momentum = float(momentum)

    def get_params(self):
        return {"momentum": self.momentum}

    def init_state(self, n_params):
        return {"velocity": np.zeros(n_params)}

    def state_arrays(self):
        return ("velocity",)

    def update(self, theta, grad, eta, state):
        beta = self.momentum
        velocity = beta * state["velocity"] - eta * grad
        if self.nesterov:
            step = beta * velocity - eta * grad
        else:
            step = velocity
        return theta + step, {"velocity": velocity}

    def edge(self):
        beta = self.momentum
        if self.nesterov:
            return (2.0 + 2.0 * beta) / (1.0 + 2.0 * beta)
        return 2.0 + 2.0 * beta

    def tangent(self, vec, state, new_state, grad, hvp, eta):
        n = vec.size // 2
        d_theta, d_vel = vec[:n], vec[n:]
        h = eta * hvp(d_theta)
        beta = self.momentum
        d_vel_new = beta * d_vel - h
        step = beta * d_vel_new - h if self.nesterov else d_vel_new
        return np.concatenate([d_theta + step, d_vel_new])


class _Nesterov(_Momentum):
    """Nesterov momentum in sklearn's form: ``theta <- theta + beta v' - eta g``."""

    name = "nesterov"
    nesterov = True


class _RMSProp(Optimizer):
    """``s <- beta_2 s + (1 - beta_2) g^2``, ``theta <- theta - eta g / P``."""

    name = "rmsprop"
    adaptive = True

    def __init__(self, beta_2, epsilon, scale=1.0):
        self.beta_2, self.epsilon = float(beta_2), float(epsilon)
        self.scale = scale

    def get_params(self):
        return {"beta_2": self.beta_2, "epsilon": self.epsilon}

    def init_state(self, n_params):
        return {"t": 0, "second": np.zeros(n_params)}

    def state_arrays(self):
        return ("second",)

    def _second(self, state, grad):
        return self.beta_2 * state["second"] + (1.0 - self.beta_2) * grad * grad

    def _precondition(self, new_state):
        return np.sqrt(new_state["second"]) / self.scale + self.epsilon

    def preconditioner(self, state, grad):
        return self._precondition(
            {"t": state["t"] + 1, "second": self._second(state, grad)}
        )

    def update(self, theta, grad, eta, state):
        new = {"t": state["t"] + 1, "second": self._second(state, grad)}
        return theta - eta * grad / self._precondition(new), new

    def tangent(self, vec, state, new_state, grad, hvp, eta):
        n = vec.size // 2
        d_theta, d_s = vec[:n], vec[n:]
        hd = hvp(d_theta)
        b2 = self.beta_2
        d_s_new = b2 * d_s + 2.0 * (1.0 - b2) * grad * hd
        root = np.sqrt(new_state["second"])
        P = root / self.scale + self.epsilon
        with np.errstate(divide="ignore", invalid="ignore"):
            d_P = np.where(root > 0, d_s_new / (2.0 * root * self.scale), 0.0)
        d_theta_new = d_theta - eta * (hd / P - grad * d_P / (P * P))
        return np.concatenate([d_theta_new, d_s_new])


class _Adam(_RMSProp):
    """Adam (Kingma & Ba) with bias-corrected moments."""

    name = "adam"

    def __init__(self, beta_1, beta_2, epsilon, scale=1.0):
        super().__init__(beta_2, epsilon, scale)
        self.beta_1 = float(beta_1)

    def get_params(self):
        return {"beta_1": self.beta_1, **super().get_params()}

    def init_state(self, n_params):
        return {"t": 0, "first": np.zeros(n_params), "second": np.zeros(n_params)}

    def state_arrays(self):
        return ("first", "second")

    def _precondition(self, new_state):
        t = new_state["t"]
        s_hat = new_state["second"] / (1.0 - self.beta_2**t)
        return (1.0 - self.beta_1**t) * (np.sqrt(s_hat) / self.scale + self.epsilon)

    def update(self, theta, grad, eta, state):
        b1 = self.beta_1
        new = {
            "t": state["t"] + 1,
            "first": b1 * state["first"] + (1.0 - b1) * grad,
            "second": self._second(state, grad),
        }
        return theta - eta * new["first"] / self._precondition(new), new

    def edge(self):
        b1 = self.beta_1
        return (2.0 + 2.0 * b1) / (1.0 - b1)

    def tangent(self, vec, state, new_state, grad, hvp, eta):
        n = vec.size // 3
        d_theta, d_m, d_s = vec[:n], vec[n : 2 * n], vec[2 * n :]
        hd = hvp(d_theta)
        b1, b2, t = self.beta_1, self.beta_2, new_state["t"]
        d_m_new = b1 * d_m + (1.0 - b1) * hd
        d_s_new = b2 * d_s + 2.0 * (1.0 - b2) * grad * hd
        c1, c2 = 1.0 - b1**t, 1.0 - b2**t
        root = np.sqrt(new_state["second"] / c2)
        P = c1 * (root / self.scale + self.epsilon)
        with np.errstate(divide="ignore", invalid="ignore"):
            d_P = np.where(root > 0, c1 * d_s_new / (2.0 * c2 * root * self.scale), 0.0)
        m = new_state["first"]
        d_theta_new = d_theta - eta * (d_m_new / P - m * d_P / (P * P))
        return np.concatenate([d_theta_new, d_m_new, d_s_new])


OPTIMIZERS = ("gd", "momentum", "nesterov", "rmsprop", "adam")


def make_optimizer(
    name, *, momentum=0.9, beta_1=0.9, beta_2=0.999, epsilon=1e-8, scale=1.0
):
    """The optimizer object of a name, with sklearn's hyper-parameter names.

    Parameters
    ----------
    name : {"gd", "momentum", "nesterov", "rmsprop", "adam"}
        The update rule.
    momentum : float, default=0.9
        ``beta`` of ``"momentum"`` and ``"nesterov"``.
    beta_1 : float, default=0.9
        Decay of Adam's first moment.
    beta_2 : float, default=0.999
        Decay of the second moment of ``"rmsprop"`` and ``"adam"``.
    epsilon : float, default=1e-8
        Added to the square root of the second moment.
    scale : float or ndarray of shape (n_params,), default=1.0
        Scale of each trained coordinate relative to the raw weight
        (``theta = w / scale``).  GD and momentum are linear in the gradient,
        so a step ``eta`` on ``theta`` is a step ``eta * scale**2`` on ``w``;
        the adaptive methods are invariant to rescaling a coordinate, so they
        divide the root of the second moment by ``scale``: then too each raw
        weight gets the step ``eta * scale**2`` (a parameterization's
        per-layer learning-rate scale) with the same ``epsilon``.

    Returns
    -------
    optimizer : Optimizer

    Examples
    --------
    >>> from sharpsk._optimizers import make_optimizer
    >>> heavy_ball = make_optimizer("momentum", momentum=0.9)
    >>> round(float(heavy_ball.stability_threshold(0.1)), 9)
    38.0
    >>> round(float(make_optimizer("adam").stability_threshold(0.01)), 9)
    3800.0
    """
    if name == "gd":
        return Optimizer()
    if name == "momentum":
        return _Momentum(momentum)
    if name == "nesterov":
        return _Nesterov(momentum)
    if name == "rmsprop":
        return _RMSProp(beta_2, epsilon, scale)
    if name == "adam":
        return _Adam(beta_1, beta_2, epsilon, scale)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}.")
