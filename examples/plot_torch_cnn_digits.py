"""
A PyTorch convolutional network at the edge of stability
========================================================

Any :class:`torch.nn.Module` trains through sharpsk's engine as a
:class:`~sharpsk.TorchRegressor`: the same sharpness traces, optimizers,
labels and scans as the built-in networks (:doc:`../user_guide/own_model`;
needs the ``torch`` extra, ``pip install "sharpsk[torch]"``).

Here the model is one the built-in estimators do not offer: a small
convolutional network on 200 of the 8x8 digits images.  The rows of ``X``
are flat, so the module reshapes them itself (``nn.Unflatten``); two 3x3
convolutions with tanh and average pooling feed a linear read-out of the ten
one-hot targets, trained with the squared error by full-batch gradient
descent.  The sharpness, the top eigenvalue of the loss Hessian over all
1898 parameters, is measured every 5 steps from Hessian-vector products
(torch's double backward).
"""

import matplotlib.pyplot as plt
import numpy as np
from torch import nn

from sharpsk import TorchRegressor
from sharpsk.datasets import load_digits_onehot
from sharpsk.hessian import eigenpairs
from sharpsk.plotting import plot_sharpness

X, Y = load_digits_onehot(n_samples=200, random_state=0)

cnn = nn.Sequential(
    nn.Unflatten(1, (1, 8, 8)),  # the flat rows of X as 1x8x8 images
    nn.Conv2d(1, 8, 3, padding=1),
    nn.Tanh(),
    nn.AvgPool2d(2),  # 8 channels of 4x4
    nn.Conv2d(8, 16, 3, padding=1),
    nn.Tanh(),
    nn.AvgPool2d(2),  # 16 channels of 2x2
    nn.Flatten(),
    nn.Linear(64, 10),
)

# %%
# Progressive sharpening, then the edge
# -------------------------------------
# ``TorchRegressor`` trains a float64 copy of ``cnn`` (``cnn`` itself is left
# as it is), drawing the initial weights with torch's own ``reset_parameters``
# seeded from ``random_state``.  At ``eta = 0.4`` the network starts at
# about 0.6 of ``2 / eta = 5``.  After a small early dip, gradient descent
# sharpens it up to the edge (around step 170) and on to half as much again,
# until the loss spikes and the sharpness is thrown back below the edge (a
# catapult, around step 275).  From then on it hovers a few percent above
# ``2 / eta`` while the loss keeps falling, not monotonically: the edge of
# stability of Cohen et al. (2021), in a convolutional network.

net = TorchRegressor(
    cnn, learning_rate=0.4, max_iter=600, record_every=5, random_state=0
).fit(X, Y)

ratio = net.sharpness_trace_ / net.stability_threshold_
steps, loss = net.steps_, net.loss_curve_
crossed = steps[np.argmax(ratio > 1)]
late = steps >= 400
print(f"{sum(p.numel() for p in net.module_.parameters())} parameters")
print(
    f"lambda_H {net.initial_sharpness_:.2f} (edge ratio {ratio[0]:.2f}) -> first "
    f"above 2 / eta = {net.stability_threshold_:.0f} at step {crossed}, peak ratio "
    f"{ratio.max():.2f} at step {steps[np.argmax(ratio)]}"
)
ups = np.mean(np.diff(loss[late]) > 0)
print(
    f"steps 400-600: edge ratio {ratio[late].mean():.3f} +- {ratio[late].std():.3f}; "
    f"loss {loss[0]:.3f} -> {loss[-1]:.4f}, up on {ups:.0%} of those records; "
    f"R^2 {net.score(X, Y):.3f}"
)
print(f"{net.n_hvp_} Hessian-vector products in {net.n_iter_} steps")

fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
plot_sharpness(net, ax=ax, marker=".", ms=3)
ax.set_title(r"a convolutional network on digits, $\eta = 0.4$")
plt.show()

# %%
# The fitted network
# ------------------
# ``module_`` is the trained float64 module, ``predict`` its output as a
# NumPy array, and ``hessian_operator`` the Hessian at the final weights for
# :mod:`sharpsk.hessian`: its top eigenvalue is the last tracked one, and
# the next ones are close behind -- at the edge of stability several
# directions sit near ``2 / eta``.

top = eigenpairs(net.hessian_operator(X, Y), k=3, random_state=0).eigenvalues
accuracy = np.mean(net.predict(X).argmax(axis=1) == Y.argmax(axis=1))
print(
    f"top Hessian eigenvalues at the end {np.round(top, 3)} (tracked "
    f"{net.sharpness_trace_[-1]:.3f}); training accuracy {accuracy:.0%}"
)
