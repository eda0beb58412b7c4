"""Pure function-space maps of the single-example UV model.

Everything here takes and returns plain numpy arrays and broadcasts over any
leading shape, so the same code serves one run (scalars) and a batch of runs
(one array element per learning rate).  Notation follows the user guide:

* ``delta_f`` = f - y, the residual on the single example;
* ``ntk`` = lambda = s^2 (|Ux|^2 + |v|^2 |x|^2), the neural tangent kernel;
* ``kappa`` = s^2 |x|^2;
* ``eta`` the learning rate, ``y`` the target.

One gradient-descent step of the UV model is *exactly* (any width)::

    delta_f' = delta_f (1 - eta ntk + eta^2 kappa delta_f (delta_f + y))
    ntk'     = ntk + eta kappa delta_f (eta ntk delta_f - 4 (delta_f + y))
"""

import numpy as np

__all__ = [
    "eos_map",
    "eos_map_derivative",
    "uv_jacobian",
    "uv_sharpness",
    "uv_simulate",
    "uv_step",
]


def recorded_steps(n_steps, every, *, start=0):
    """Steps ``start, start + every, ...`` up to ``n_steps``, always ending at it."""
    steps = np.arange(start, n_steps + 1, every)
    if len(steps) == 0 or steps[-1] != n_steps:
        steps = np.append(steps, n_steps)
    return steps


def uv_step(delta_f, ntk, eta, kappa, y):
    """One exact gradient-descent step of the UV model in function space.

    Parameters
    ----------
    delta_f, ntk, eta, kappa, y : float or ndarray
        Residual, NTK, learning rate, ``s**2 |x|**2`` and target; broadcast.

    Returns
    -------
    delta_f_new, ntk_new : ndarray
        The state after one step.

    Examples
    --------
    >>> from sharpsk._maps import uv_step
    >>> uv_step(0.5, 2.0, 0.1, 1.0, 1.0)
    (0.40375, 1.705)
    """
    ek = eta * kappa
    delta_f_new = delta_f * (1.0 - eta * ntk + eta * ek * delta_f * (delta_f + y))
    ntk_new = ntk + ek * delta_f * (eta * ntk * delta_f - 4.0 * (delta_f + y))
    return delta_f_new, ntk_new


def uv_jacobian_entries(delta_f, ntk, eta, kappa, y):
    """Entries ``(j00, j01, j10, j11)`` of :func:`uv_jacobian`, elementwise.

    Broadcasting arrays rather than a stacked 2x2 matrix, so tangent maps over a
    batch and over one run round identically.
    """
    ek = eta * kappa
    return (
        1.0 - eta * ntk + eta * ek * delta_f * (3.0 * delta_f + 2.0 * y),
        -eta * delta_f,
        2.0 * eta * ek * ntk * delta_f - 4.0 * ek * (2.0 * delta_f + y),
        1.0 + eta * ek * delta_f * delta_f,
    )


def uv_jacobian(delta_f, ntk, eta, kappa, y):
    """Jacobian of :func:`uv_step` with respect to ``(delta_f, ntk)``.

    Returns
    -------
    jac : ndarray of shape (..., 2, 2)
        ``jac[..., i, j] = d state_new[i] / d state[j]`` with
        ``state = (delta_f, ntk)``.
    """
    delta_f, ntk, eta, kappa, y = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (delta_f, ntk, eta, kappa, y))
    )
    jac = np.empty(delta_f.shape + (2, 2))
    (
        jac[..., 0, 0],
        jac[..., 0, 1],
        jac[..., 1, 0],
        jac[..., 1, 1],
    ) = uv_jacobian_entries(delta_f, ntk, eta, kappa, y)
    return jac


def uv_sharpness(delta_f, ntk, kappa, y):
    """Top Hessian eigenvalue of the single-example UV loss, in closed form.

    ``lambda_H = (ntk + sqrt(ntk**2 + 4 kappa delta_f (3 delta_f + 2 y))) / 2``.
    The rest of the spectrum (width ``n``, ``d`` features): the partner root
    ``ntk - lambda_H``, ``+sqrt(kappa) |delta_f|`` and ``-sqrt(kappa) |delta_f|``
    ``n - 1`` times each, and ``n (d - 1)`` zeros; the trace is ``ntk``.  On
    reachable states the discriminant equals
    ``ntk**2 - 4 kappa f**2 + 4 kappa (2 delta_f + y)**2 >= 0``; round-off below
    zero is clipped.

    Examples
    --------
    >>> from sharpsk._maps import uv_sharpness
    >>> float(uv_sharpness(0.0, 3.0, 1.0, 1.0))  # at a minimum it is the NTK
    3.0
    """
    disc = ntk * ntk + 4.0 * kappa * delta_f * (3.0 * delta_f + 2.0 * y)
    return 0.5 * (ntk + np.sqrt(np.maximum(disc, 0.0)))


def eos_map(g, y_tilde):
    """The 1-D cubic map of the UV model restricted to its EoS manifold.

    In scaled variables ``g = eta sqrt(kappa) delta_f`` and
    ``y_tilde = eta sqrt(kappa) y``, on the manifold ``Q = 0`` (where
    ``eta ntk = 2 (g + y_tilde)``) one step is
    ``g' = g (1 - 2 y_tilde + (y_tilde - 2) g + g**2)``.
    """
    return g * (1.0 - 2.0 * y_tilde + (y_tilde - 2.0) * g + g * g)


def eos_map_derivative(g, y_tilde):
    """Derivative of :func:`eos_map` with respect to ``g``."""
    return 1.0 - 2.0 * y_tilde + 2.0 * (y_tilde - 2.0) * g + 3.0 * g * g


def divergence_bound(delta_f0, y):
    """Residual magnitude past which a run counts as diverged.

    ``1e6 * max(|delta_f0|, |y|, 1e-12)`` (broadcasts).  Beyond it the cubic
    term of the map dominates and the residual grows super-exponentially, so
    the exact constant only shifts the reported divergence step by a few steps.
    """
    return 1e6 * np.maximum(np.maximum(np.abs(delta_f0), np.abs(y)), 1e-12)


# Residuals below 1e-256 of the divergence bound (1e-250 of the problem's
# scale) are set to exactly 0 after every 32nd step.  Such a run has converged
# (0 is an exact fixed point and the NTK no longer moves in the last bit);
# without the flush it would crawl through subnormal floats, ~100x slower
# per operation, for thousands of steps.
_FLUSH_RATIO = 1e-256
_FLUSH_EVERY = 32


class _UVStepper:
    """:func:`uv_step` in place on preallocated buffers, plus the flush.

    Rounds exactly like :func:`uv_step` (same operations in the same order), so
    single runs and batches, in :func:`uv_simulate` or elsewhere, agree to the
    last bit.  ``eta``, ``kappa``, ``y`` and ``bound`` must have the batch shape.
    """

    def __init__(self, eta, kappa, y, bound):
        self.eta, self.y = eta, y
        self.ek = eta * kappa
        self.eek = eta * self.ek
        self.flush_below = _FLUSH_RATIO * bound
        self._buf = [np.empty(np.shape(eta)) for _ in range(4)]

    def subset(self, index):
        """The stepper of the runs ``index`` (for batch compaction)."""
        new = object.__new__(_UVStepper)
        for name in ("eta", "y", "ek", "eek", "flush_below"):
            setattr(new, name, getattr(self, name)[index])
        new._buf = [np.empty(np.shape(new.eta)) for _ in range(4)]
        return new

    def step(self, df, ntk, t):
        """Advance ``(df, ntk)`` in place from step ``t`` to ``t + 1``."""
        a, e, d, j = self._buf
        np.multiply(self.eta, ntk, out=a)  # eta ntk
        np.add(df, self.y, out=e)  # df + y
        np.multiply(self.eek, df, out=d)
        d *= e  # eta ek df (df + y)
        np.multiply(a, df, out=j)  # eta ntk df
        np.subtract(1.0, a, out=a)
        a += d  # 1 - eta ntk + eta ek df (df + y)
        e *= 4.0
        j -= e  # eta ntk df - 4 (df + y)
        np.multiply(self.ek, df, out=d)
        d *= j
        ntk += d
        df *= a
        if (t + 1) % _FLUSH_EVERY == 0:
            np.copyto(df, 0.0, where=np.abs(df) < self.flush_below)


def uv_simulate(
    delta_f0,
    ntk0,
    eta,
    kappa,
    y,
    n_steps,
    *,
    record_every=1,
    record_from=0,
    output_scale=None,
    start_step=0,
    bound=None,
):
    """Iterate :func:`uv_step`, recording states, for one run or a batch.

    All inputs broadcast to a common shape ``batch``; every element is an
    independent run.  A run *diverges* at the first step whose residual is not
    finite or exceeds :func:`divergence_bound`; it then stops, and its records
    from that step on are NaN.

    Parameters
    ----------
    delta_f0, ntk0, eta, kappa, y : float or ndarray
        Initial residual and NTK, learning rate, ``kappa`` and target.
    n_steps : int
        Number of gradient-descent steps.
    record_every : int, default=1
        Record the state every ``record_every`` steps.
    record_from : int, default=0
        First recorded step; recorded steps are
        ``record_from, record_from + record_every, ...  <= n_steps``, and
        always ``n_steps`` (the final state).
    output_scale : float or None, default=None
        The UV model's multiplier ``s`` (``kappa = s**2 |x|**2``): also return
        the 2x2 matrix ``M`` with ``(U x, v)_T = M (U x, v)_0`` over the
        completed steps.  One GD step maps ``a = U x`` and ``v`` to
        ``(a - e |x|^2 v, v - e a)`` with ``e = eta s delta_f``, so the weights
        of a whole run follow from ``M`` without recording every step.
    start_step : int, default=0
        Step number of the initial state, to continue an earlier run: steps
        run from ``start_step`` to ``n_steps`` (``record_from`` and
        ``n_steps`` count from step 0), flushing on the same steps.
    bound : float or ndarray, default=None
        The divergence bound; None: :func:`divergence_bound` of the initial
        state (pass the original run's bound to continue it).

    Notes
    -----
    Steps are those of :func:`uv_step`, bit for bit, except that a residual
    below ``1e-256`` times :func:`divergence_bound` is set to exactly 0 after
    every 32nd step (a converged run; this keeps it out of slow subnormal
    arithmetic and leaves every other recorded number unchanged).

    Returns
    -------
    result : dict
        ``steps`` (n_records,), ``delta_f`` and ``ntk`` (n_records, *batch):
        the state *before* the update of that step (step 0 is the
        initialization, step ``n_steps`` the final state); ``n_iter`` (batch,)
        the number of steps completed with a finite, bounded result;
        ``diverged`` (batch,) bool; ``final`` the state ``(delta_f, ntk)``
        after the last step and ``bound`` the divergence bound (to continue
        the run); with ``output_scale``, ``transfer``
        (*batch, 2, 2), the matrix ``M``.
    """
    delta_f0, ntk0, eta, kappa, y = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (delta_f0, ntk0, eta, kappa, y))
    )
    batch = delta_f0.shape
    steps = recorded_steps(n_steps, record_every, start=max(record_from, start_step))
    rec_df = np.full((len(steps),) + batch, np.nan)
    rec_ntk = np.full((len(steps),) + batch, np.nan)
    if bound is None:
        bound = divergence_bound(delta_f0, y)
    alive = np.abs(delta_f0) <= bound
    n_iter = np.zeros(batch, dtype=np.int64)
    df, ntk = delta_f0.copy(), ntk0.copy()
    stepper = _UVStepper(eta, kappa, y, bound)
    track = output_scale is not None
    if track:
        # Rows of M: the coefficients of (a_0, v_0) in a_t and in v_t.
        M = np.broadcast_to(np.eye(2), batch + (2, 2)).copy()
        e_v = eta * output_scale  # e = e_v * delta_f
        e_a = eta * kappa / output_scale  # e |x|^2 = e_a * delta_f
    next_rec = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(start_step, n_steps + 1):
            if next_rec < len(steps) and steps[next_rec] == t:
                rec_df[next_rec] = np.where(alive, df, np.nan)
                rec_ntk[next_rec] = np.where(alive, ntk, np.nan)
                next_rec += 1
            if t == n_steps:
                break
            if track:
                row_a = M[..., 0, :] - (e_a * df)[..., None] * M[..., 1, :]
                row_v = M[..., 1, :] - (e_v * df)[..., None] * M[..., 0, :]
            stepper.step(df, ntk, t)
            alive &= np.abs(df) <= bound  # NaN compares False
            if not alive.any():
                break
            n_iter += alive
            if track and batch:
                live = alive[..., None]
                M[..., 0, :] = np.where(live, row_a, M[..., 0, :])
                M[..., 1, :] = np.where(live, row_v, M[..., 1, :])
            elif track:  # one run, still alive here
                M[0], M[1] = row_a, row_v
    out = {
        "steps": steps,
        "delta_f": rec_df,
        "ntk": rec_ntk,
        "n_iter": n_iter,
        "diverged": ~alive,
        "final": (df, ntk),
        "bound": bound,
    }
    if track:
        out["transfer"] = M
    return out
