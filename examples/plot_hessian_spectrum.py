"""
The Hessian spectrum at the edge of stability
=============================================

The sharpness is one number, the top of a spectrum of as many eigenvalues as
the network has parameters.  :mod:`sharpsk.hessian` computes more of it from
Hessian-vector products alone: the top ``k`` eigenpairs
(:func:`~sharpsk.hessian.eigenpairs`), the trace
(:func:`~sharpsk.hessian.trace`, Hutchinson or Hutch++ with a standard
error) and the spectral density by stochastic Lanczos quadrature
(:func:`~sharpsk.hessian.spectral_density`).  Every fitted estimator hands
its training-loss Hessian over as a
:class:`~scipy.sparse.linalg.LinearOperator`,
``estimator.hessian_operator(X, y)``, in the coordinates where its stability
threshold applies.

Here a tanh MLP on 200 digits (the network of
:ref:`sphx_glr_auto_examples_plot_mlp_digits_eos.py`) is looked at twice: at
initialization and after 400 steps at the edge of stability.  Training
moves a few dozen eigenvalues out of the bulk near zero, and several of
them crowd just below the largest, which sits at ``2 / eta``.
"""

import matplotlib.pyplot as plt
import numpy as np

from sharpsk import MLPRegressor
from sharpsk.datasets import load_digits_onehot
from sharpsk.hessian import eigenpairs, spectral_density, trace
from sharpsk.plotting import plot_spectral_density

X, Y = load_digits_onehot(n_samples=200, random_state=0)
eta = 0.5
net = MLPRegressor(
    (32,),
    learning_rate=eta,
    init_scale=0.25,
    max_iter=0,
    record_every=10,
    warm_start=True,
    random_state=0,
)

# %%
# The spectrum at initialization, then after 400 steps (``warm_start``
# continues the same run).  The top eigenvalues need a few dozen products,
# the density 10 Lanczos runs of 80 products.

results = {}
for label, steps in (("initialization", 0), ("after 400 steps", 400)):
    net.set_params(max_iter=steps).fit(X, Y)
    H = net.hessian_operator(X, Y)
    top = eigenpairs(H, k=12, random_state=0)
    tr = trace(H, n_samples=100, method="hutch++", random_state=0)
    density = spectral_density(H, n_probes=10, n_lanczos=80, random_state=0)
    results[label] = (top, density)
    print(
        f"{label}: P = {H.shape[0]}, lambda_max = {top.eigenvalues[0]:.3f} "
        f"(sharpness_trace_ {net.sharpness_trace_[-1]:.3f}, 2/eta = {2 / eta}), "
        f"trace = {tr.estimate:.2f} +- {tr.standard_error:.2f}, "
        f"{top.n_hvp} + {density.n_hvp} products"
    )
    print("  top 12:", np.array2string(top.eigenvalues, precision=3))

# %%
# At initialization every eigenvalue is below 1.4, far under the edge
# ``2 / eta = 4``.  After 400 steps the trace has grown about fivefold and
# the top of the spectrum has spread out: some seventy eigenvalues lie above
# 1 (a dense ``eigvalsh`` of this 2410 x 2410 Hessian agrees), the largest
# at the edge of stability and the next ones within a few percent of it --
# the crowding that makes tracking the top eigenvalue at the edge of
# stability hard.  The
# bulk stays concentrated near zero, with small negative eigenvalues.

fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for ax, (label, (top, density)) in zip(axes, results.items(), strict=True):
    plot_spectral_density(density, ax=ax)
    for value in top.eigenvalues:
        ax.axvline(value, color="C3", lw=0.6, alpha=0.6)
    ax.axvline(2 / eta, color="k", ls="--", lw=1.0)
    ax.set_title(label)
axes[0].figure.suptitle(
    r"spectral density (log scale), top 12 eigenvalues (red), $2/\eta$ (dashed)"
)
plt.show()
