"""Orbit analysis: labels, periods, Lyapunov exponents, UV fixed points.

Ground truth: traces built by construction, closed forms (logistic map, the
EoS map's fixed points and 2-cycle), exact Jacobians, and the UV equations.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import brentq

from sharpsk._dynamics import (
    LABELS,
    _analyze_batch,
    _seqsum,
    classify_run,
    default_tail,
    detect_period,
    eos_fixed_point_multiplier,
    eos_manifold_ntk,
    lazy_phase,
    logistic_map,
    logistic_map_derivative,
    lyapunov_from_growth,
    map_lyapunov,
    series_lyapunov,
    tangent_lyapunov,
    tangent_step,
    uv_critical_learning_rate,
    uv_lyapunov,
    uv_minimum_multiplier,
    uv_q,
    uv_q_update,
    uv_scaled_variables,
)
from sharpsk._maps import (
    eos_map,
    eos_map_derivative,
    uv_jacobian,
    uv_sharpness,
    uv_simulate,
    uv_step,
)

LOG2 = np.log(2.0)


def logistic_orbit(r, x0=0.3, n=3000, discard=1000):
    x = x0
    for _ in range(discard):
        x = logistic_map(x, r)
    out = np.empty(n)
    for t in range(n):
        out[t] = x
        x = logistic_map(x, r)
    return out


def eos_two_cycle(y_tilde):
    """The EoS map's 2-cycle: roots of g**2 + a g - a with a = y_tilde - 1."""
    a = y_tilde - 1.0
    disc = np.sqrt(a * a + 4.0 * a)
    return (-a + disc) / 2.0, (-a - disc) / 2.0


def two_cycle_multiplier(y_tilde):
    g1, g2 = eos_two_cycle(y_tilde)
    return eos_map_derivative(g1, y_tilde) * eos_map_derivative(g2, y_tilde)


def uv_run(eta, n_steps=6000, delta_f0=-1.0, ntk0=1.0, kappa=1.0, y=1.0):
    """Simulate and classify UV runs (f0 = 0); returns one result per eta."""
    eta = np.atleast_1d(np.asarray(eta, dtype=float))
    sim = uv_simulate(delta_f0, ntk0, eta, kappa, y, n_steps)
    T = default_tail(n_steps + 1)
    lam = uv_lyapunov(
        sim["delta_f"][-T], sim["ntk"][-T], eta, kappa, y, T - 1, discard=T // 8
    )
    out = []
    for i, e in enumerate(eta):
        n = sim["n_iter"][i] + 1
        df, ntk = sim["delta_f"][:n, i], sim["ntk"][:n, i]
        out.append(
            classify_run(
                0.5 * df * df,
                uv_sharpness(df, ntk, kappa, y),
                e,
                diverged=bool(sim["diverged"][i]),
                lyapunov=lam[i],
                orbit=df,
            )
        )
    return out


# --------------------------------------------------------------------------
# Labels on traces built by construction
# --------------------------------------------------------------------------


def test_converge_geometric_and_catapult():
    t = np.arange(500)
    res = classify_run(np.exp(-0.05 * t), np.full(500, 0.5), 2.0)
    assert (res["label"], res["period"], res["catapult"]) == ("converge", 1, False)
    assert res["final_loss"] == np.exp(-0.05 * 499)
    assert res["eta_sharpness_mean"] == 1.0
    # A catapult: eta lambda_H starts at 3, the loss spikes, then converges.
    sharp = 0.5 + 1.0 * np.exp(-0.1 * t)  # eta = 2: 3 -> 1
    loss = np.exp(-0.05 * t) * (1.0 + 50.0 * np.exp(-((t - 20.0) ** 2) / 20.0))
    res = classify_run(loss, sharp, 2.0)
    assert res["label"] == "converge" and res["catapult"]
    assert_allclose(res["max_eta_sharpness"], 3.0, rtol=1e-15)


def test_slow_oscillating_convergence_is_converge():
    # Multiplier -0.97: repeats after 2 steps within rtol long before it
    # repeats after 1; contraction must win over the period-2 test.
    t = np.arange(4000)
    resid = (-0.97) ** t
    res = classify_run(0.5 * resid**2, 1.0 + 0.01 * resid, 1.97, orbit=resid)
    assert (res["label"], res["period"]) == ("converge", 1)


def test_periodic_orbits_by_construction():
    rng = np.random.default_rng(0)
    for p in (2, 3, 4, 5, 7, 16):
        pattern = rng.uniform(0.5, 1.5, size=p)
        loss = np.tile(pattern, 3000 // p + 1)[:3000]
        sharp = 1.0 + 0.05 * np.tile(pattern[::-1], 3000 // p + 1)[:3000]
        res = classify_run(loss, sharp, 2.0, lyapunov=-0.2)
        assert res["period"] == p
        assert res["label"] == ("eos" if p == 2 else "periodic")
        assert res["eta_sharpness_min"] <= res["eta_sharpness_max"]
    # A period-2 orbit far from the edge (eta lambda_H ~ 4) is not EoS.
    res = classify_run(loss, 2 * sharp, 2.0, lyapunov=-0.2)
    assert (res["label"], res["period"]) == ("periodic", 16)
    two = np.tile([0.5, 1.5], 500)
    res = classify_run(two, 2.0 + two, 1.0, lyapunov=-0.2)
    assert (res["label"], res["period"]) == ("periodic", 2)


def test_period_robust_to_noise_and_transients():
    rng = np.random.default_rng(1)
    pattern = np.array([0.2, 0.9, 0.4, 0.7])
    base = np.tile(pattern, 1000)
    assert detect_period(base * (1 + 1e-9 * rng.standard_normal(4000))) == 4
    assert detect_period(base * (1 + 1e-3 * rng.standard_normal(4000))) == 0
    # A slow transient decaying into a period-3 orbit: the default tail (last
    # quarter) and the half-window test see the settled orbit.
    t = np.arange(8000)
    series = np.tile([0.1, 0.5, 0.9], 2667)[:8000] + 0.5 * 0.995**t
    T = default_tail(series.size)
    assert detect_period(series[-T:]) == 3
    assert detect_period(series[:1000]) == 0  # still in the transient
    # Several signals: the joint period is the least common multiple.
    two = np.tile([1.0, 2.0], 300)
    three = np.tile([1.0, 2.0, 3.0], 200)
    assert detect_period(np.stack([two, three], axis=1)) == 6
    assert detect_period(np.tile([1.0, 2.0, 3.0], 200), max_period=2) == 0
    with pytest.raises(ValueError, match="series"):
        detect_period(np.zeros((2, 3, 4)))


def test_chaotic_needs_positive_exponent():
    x = logistic_orbit(4.0, n=2000)
    sharp = 1.0 + 0.1 * x  # eta = 2: mean eta lambda_H ~ 2.1
    res = classify_run(x, sharp, 2.0, lyapunov=LOG2)
    assert (res["label"], res["period"]) == ("chaotic", 0)
    assert res["lyapunov"] == LOG2
    # Same traces, no exponent: bounded non-monotone hovering at 2 is "eos".
    res = classify_run(x, sharp, 2.0)
    assert res["label"] == "eos" and np.isnan(res["lyapunov"])
    # Far from the edge and not chaotic: an unresolved oscillation.
    assert classify_run(x, sharp, 1.0, lyapunov=0.0)["label"] == "periodic"


def test_real_network_edge_of_stability():
    # Loss falls non-monotonically while eta lambda_H hovers near 2, no period.
    rng = np.random.default_rng(2)
    t = np.arange(3000)
    loss = np.exp(-t / 2000.0) * (1.0 + 0.1 * rng.random(3000))
    sharp = (2.0 + 0.05 * rng.standard_normal(3000)) / 0.1
    res = classify_run(loss, sharp, 0.1)
    assert (res["label"], res["period"]) == ("eos", 0)
    assert abs(res["eta_sharpness_mean"] - 2.0) < 0.01
    # The same loss decreasing monotonically below the edge converges.
    res = classify_run(np.exp(-t / 2000.0), sharp / 2.0, 0.1)
    assert res["label"] == "converge"


def test_diverge_and_bad_input():
    res = classify_run([1.0, 10.0, 1e3], [1.0, 2.0, 3.0], 1.0, diverged=True)
    assert (res["label"], res["period"]) == ("diverge", 0)
    assert np.isnan(res["lyapunov"]) and res["final_loss"] == np.inf
    assert np.isnan(res["eta_sharpness_mean"]) and not res["catapult"]
    res = classify_run([1.0, np.inf], [1.0, np.nan], 1.0, lyapunov=0.5)
    assert res["label"] == "diverge" and np.isnan(res["lyapunov"])
    with pytest.raises(ValueError, match="loss"):
        classify_run([], [1.0], 1.0)
    with pytest.raises(ValueError, match="sharpness"):
        classify_run([1.0], [], 1.0)
    with pytest.raises(ValueError, match="orbit"):
        classify_run(np.ones(10), np.ones(10), 1.0, orbit=np.ones(9))
    with pytest.raises(ValueError, match="tail"):
        classify_run(np.ones(10), np.ones(10), 1.0, tail=0)


def test_default_tail_rule():
    assert default_tail(1) == 1
    assert default_tail(600) == 256  # at least four times max_period...
    assert default_tail(300) == 150  # ...but at most half the run
    assert default_tail(2000) == 500  # the last quarter
    assert default_tail(10**6) == 1024  # capped
    assert default_tail(100, max_period=8) == 32


def test_batch_equals_single_runs():
    rng = np.random.default_rng(3)
    N, T = 7, 400
    sig = rng.random((N, T, 2))
    sig[0] = np.tile([[0.3, 1.0], [0.6, 2.0]], (T // 2, 1))
    loss, es = sig[..., 0].copy(), 2.0 * sig[..., 1]
    lyap = rng.normal(size=N)
    args = (np.zeros(N, bool), lyap, es.max(axis=1), loss[:, -1])
    batch = _analyze_batch(sig, loss, es, *args, edge=2.0)
    for i in range(N):
        one = _analyze_batch(
            sig[i : i + 1],
            loss[i : i + 1],
            es[i : i + 1],
            *(a[i : i + 1] for a in args),
            edge=2.0,
        )
        for key in batch:
            assert_array_equal(one[key], batch[key][i : i + 1], err_msg=key)
    assert set(batch["label"]) <= set(LABELS)


def test_tail_statistics_are_sequential_sums_close_to_numpy():
    # The labels' means and standard deviation are sequential sums (what the
    # compiled labeller computes); they agree with numpy's pairwise ones to
    # round-off, including a tail with a tiny spread about a large offset
    # and one whose first value is an outlier.
    rng = np.random.default_rng(0)
    T = 1024
    es = np.stack(
        [
            rng.random(T),
            1.9 + 1e-9 * rng.standard_normal(T),
            np.r_[5.0, np.full(T - 1, 2.0) + 1e-12 * rng.standard_normal(T - 1)],
            np.tile([1.7, 2.3], T // 2),
        ]
    )
    x = np.cumsum(es, axis=1)[:, -1]
    assert_array_equal(_seqsum(es), x)
    assert_array_equal(_seqsum(es[:, :0]), np.zeros(4))
    loss = es.copy()
    res = _analyze_batch(
        np.stack([loss, es], axis=1),
        loss,
        es,
        np.zeros(4, bool),
        np.full(4, np.nan),
        es.max(axis=1),
        loss[:, -1],
        edge=2.0,
    )
    assert_allclose(res["eta_sharpness_mean"], es.mean(axis=1), rtol=1e-14)
    assert_allclose(res["eta_sharpness_std"], es.std(axis=1), rtol=1e-8)
    assert_allclose(res["eta_sharpness_std"][3], 0.3, rtol=1e-14)


# --------------------------------------------------------------------------
# Lyapunov exponents
# --------------------------------------------------------------------------


def test_logistic_map_exponents():
    f, fp = logistic_map, logistic_map_derivative
    lam = map_lyapunov(f, fp, 0.3, 100_000, args=(4.0,))
    assert_allclose(lam, LOG2, atol=5e-3)
    # Period-2 orbit at r = 3.2: multiplier 4 + 2r - r**2 (closed form).
    lam = map_lyapunov(f, fp, 0.3, 2000, args=(3.2,))
    assert_allclose(lam, 0.5 * np.log(abs(4 + 2 * 3.2 - 3.2**2)), rtol=1e-9)
    # Inside the period-3 window: negative; batched over r.
    lam = map_lyapunov(f, fp, 0.3, 5000, args=(np.array([3.83, 4.0]),))
    assert lam[0] < -0.1 and abs(lam[1] - LOG2) < 0.02
    lam_39 = map_lyapunov(f, fp, 0.3, 100_000, args=(3.9,))
    assert 0.3 < lam_39 < 0.6
    # Time-series estimate (Rosenstein) from the orbit alone.
    assert_allclose(series_lyapunov(logistic_orbit(4.0)), LOG2, atol=0.05)
    assert_allclose(series_lyapunov(logistic_orbit(3.9)), lam_39, atol=0.05)
    with pytest.raises(ValueError, match="too short"):
        series_lyapunov(np.ones(20))


def test_eos_map_exponent_matches_time_series():
    for y_tilde in (1.52, 1.8):
        lam = map_lyapunov(eos_map, eos_map_derivative, 0.1, 50_000, args=(y_tilde,))
        g = np.empty(2000)
        g[0] = 0.1
        for _ in range(1000):
            g[0] = eos_map(g[0], y_tilde)
        for t in range(1999):
            g[t + 1] = eos_map(g[t], y_tilde)
        assert lam > 0.3
        assert_allclose(series_lyapunov(g), lam, atol=0.05)


def test_uv_lyapunov_period_two_closed_form():
    # On the 2-cycle (Q = 0) the tangent map has the along-manifold multiplier
    # f'(g1) f'(g2) and the transverse one prod (1 - g_i**2)**2.
    for y_tilde in (1.1, 1.2):
        g1, g2 = eos_two_cycle(y_tilde)
        assert_allclose(eos_map(eos_map(g1, y_tilde), y_tilde), g1, atol=1e-14)
        along = 0.5 * np.log(abs(two_cycle_multiplier(y_tilde)))
        across = np.log(abs(1 - g1**2)) + np.log(abs(1 - g2**2))
        eta, kappa, y = y_tilde, 1.0, 1.0  # g = eta delta_f
        df = g1 / eta
        ntk = eos_manifold_ntk(df, kappa, y)
        lam = uv_lyapunov(df, ntk, eta, kappa, y, 2000, discard=200)
        assert_allclose(lam, max(along, across), rtol=1e-6)


@pytest.mark.parametrize("discard", [0, 7, 125])
def test_uv_lyapunov_equals_the_mean_log_growth_of_every_step(discard):
    # Ground truth: the textbook definition, renormalised every step, with the
    # 2x2 Jacobian of uv_jacobian; uv_lyapunov renormalises every 16 steps.
    eta = np.array([0.7, 0.9, 1.1, 1.2, 1.3, 1.4, 1.5])  # converge .. chaos
    df, ntk, n_steps = np.full(7, -1.0), np.full(7, 1.0), 1000
    tangent = np.full((7, 2), np.sqrt(0.5))
    total = np.zeros(7)
    for t in range(n_steps):
        tangent = np.einsum("rij,rj->ri", uv_jacobian(df, ntk, eta, 1.0, 1.0), tangent)
        norm = np.linalg.norm(tangent, axis=1)
        tangent /= norm[:, None]
        total += np.log(norm) if t >= discard else 0.0
        df, ntk = uv_step(df, ntk, eta, 1.0, 1.0)
    expected = total / (n_steps - discard)
    got = uv_lyapunov(-1.0, 1.0, eta, 1.0, 1.0, n_steps, discard=discard)
    assert_allclose(got, expected, rtol=1e-11, atol=1e-13)


def test_uv_lyapunov_chaos_matches_eos_map_and_batches():
    y_tilde = np.array([1.52, 1.8])
    sim = uv_simulate(-0.3, eos_manifold_ntk(-0.3, 1.0, 1.0), y_tilde, 1.0, 1.0, 500)
    lam = uv_lyapunov(sim["delta_f"][-1], sim["ntk"][-1], y_tilde, 1.0, 1.0, 20_000)
    lam1 = map_lyapunov(eos_map, eos_map_derivative, 0.1, 50_000, args=(y_tilde,))
    assert_allclose(lam, lam1, atol=0.03)
    # A batch and single runs round identically.
    one = uv_lyapunov(sim["delta_f"][-1, 1], sim["ntk"][-1, 1], 1.8, 1.0, 1.0, 20_000)
    assert one == lam[1]
    with pytest.raises(ValueError, match="discard"):
        uv_lyapunov(0.1, 1.0, 1.0, 1.0, 1.0, 10, discard=10)


def uv_param_hessian(u, v, y):
    """Hessian of (v u - y)**2 / 2 for scalar weights (width 1, |x| = 1)."""
    r = u * v - y
    return np.array([[v * v, u * v + r], [u * v + r, u * u]])


@pytest.mark.parametrize("eta", [1.1, 1.52])
def test_tangent_lyapunov_parameter_space_vs_function_space(eta):
    # Width 1, x = 1, s = 1: f = v u, kappa = 1, ntk = u**2 + v**2 and
    # Q = (u**2 - v**2)**2.  Off Q = 0 the map theta -> (delta_f, ntk) is a
    # local diffeomorphism, but the attractor lies on Q = 0 where it folds:
    # the transverse coordinate u**2 - v**2 = sqrt(Q) contracts at half the
    # rate of Q.  So the along-manifold exponent (chaos) is shared, while on
    # the 2-cycle the parameter-space exponent is max(along, across / 2).
    u, v, y = 0.3, 0.2, 1.0
    for _ in range(2000):  # settle on the attractor
        r = u * v - y
        u, v = u - eta * r * v, v - eta * r * u
    df0, ntk0 = u * v - y, u * u + v * v
    n = 4000 if eta < 1.5 else 40_000
    hvps = []
    for _ in range(n):
        H = uv_param_hessian(u, v, y)
        hvps.append(lambda d, H=H: H @ d)
        r = u * v - y
        u, v = u - eta * r * v, v - eta * r * u
    lam_theta = tangent_lyapunov(hvps, eta, np.array([1.0, 0.3]), discard=100)
    lam_f = uv_lyapunov(df0, ntk0, eta, 1.0, y, n, discard=100)
    if eta < 1.5:
        g1, g2 = eos_two_cycle(eta)
        along = 0.5 * np.log(abs(two_cycle_multiplier(eta)))
        across = np.log(abs(1 - g1**2)) + np.log(abs(1 - g2**2))
        assert_allclose(lam_f, max(along, across), rtol=1e-6)
        assert_allclose(lam_theta, max(along, across / 2), rtol=1e-6)
    else:
        assert_allclose(lam_theta, lam_f, atol=0.03)


def test_tangent_helpers():
    H = np.diag([3.0, 0.5, -0.2])
    lam = tangent_lyapunov(lambda t, d: H @ d, 0.9, np.ones(3), 200, discard=60)
    assert_allclose(lam, np.log(abs(1 - 0.9 * 3.0)), rtol=1e-12)
    d, lg = tangent_step(np.array([0.0, 0.0, 1.0]), H @ [0.0, 0.0, 1.0], 0.9)
    assert_allclose(lg, np.log(1.18), rtol=1e-15)
    assert_allclose(d, [0.0, 0.0, 1.0])
    assert lyapunov_from_growth([1.0, 2.0, 4.0], discard=1) == 3.0
    assert np.isnan(lyapunov_from_growth([1.0], discard=1))
    assert np.isnan(lyapunov_from_growth([1.0, np.nan]))
    with pytest.raises(ValueError, match="n_steps"):
        tangent_lyapunov(lambda t, d: d, 1.0, np.ones(2))


# --------------------------------------------------------------------------
# UV fixed points, thresholds and the route to chaos
# --------------------------------------------------------------------------


def test_minimum_multiplier_and_critical_learning_rate():
    for eta, ntk in [(0.3, 2.0), (1.5, 1.0), (0.7, 4.0)]:
        jac = uv_jacobian(0.0, ntk, eta, 0.8, -1.3)
        eig = np.sort(np.linalg.eigvals(jac).real)
        assert_allclose(eig, np.sort([uv_minimum_multiplier(ntk, eta), 1.0]))
    kappa, y = 0.25, -2.0
    eta_c = uv_critical_learning_rate(kappa, y)
    assert eta_c == 1.0
    # The flattest reachable minimum has ntk = 2 sqrt(kappa)|y| (Q = 0, f = y),
    # marginal (multiplier -1) exactly at eta_c.
    assert uv_minimum_multiplier(eos_manifold_ntk(0.0, kappa, y), eta_c) == -1.0
    assert uv_critical_learning_rate(1.0, 0.0) == np.inf


def test_q_law_along_orbits():
    rng = np.random.default_rng(4)
    # Q >= 0 at any initialization (Cauchy-Schwarz): f = s v.a, ntk =
    # s^2 (|a|^2 + |v|^2 |x|^2).
    a, v = rng.normal(size=(2, 100, 8))
    x2, s = 2.0, 0.5
    y = 0.7
    df = s * np.sum(v * a, axis=1) - y
    ntk = s * s * (np.sum(a * a, axis=1) + np.sum(v * v, axis=1) * x2)
    kappa = s * s * x2
    assert np.all(uv_q(df, ntk, kappa, y) >= 0)
    eta = np.linspace(0.2, 3.0, 100)  # converge, EoS, chaos and divergence
    with np.errstate(all="ignore"):
        for _ in range(300):
            q = uv_q(df, ntk, kappa, y)
            df_new, ntk_new = uv_step(df, ntk, eta, kappa, y)
            q_new = uv_q(df_new, ntk_new, kappa, y)
            scale = ntk_new**2 + 4 * kappa * (df_new + y) ** 2
            ok = np.isfinite(scale) & (np.abs(df_new) < 1e6)
            err = np.abs(q_new - uv_q_update(q, df, eta, kappa))[ok]
            assert np.all(err <= 1e-12 * scale[ok])
            df, ntk = np.where(ok, df_new, 0.0), np.where(ok, ntk_new, 1.0)


def test_scaled_map_and_eos_restriction():
    rng = np.random.default_rng(5)
    df, ntk = rng.normal(size=50), rng.uniform(0.1, 3.0, 50)
    eta, kappa, y = rng.uniform(0.1, 2.0, 50), rng.uniform(0.1, 2.0, 50), 0.8
    g, x, yt = uv_scaled_variables(df, ntk, eta, kappa, y)
    g2, x2, _ = uv_scaled_variables(*uv_step(df, ntk, eta, kappa, y), eta, kappa, y)
    assert_allclose(g2, g * (1 - x + g * (g + yt)), rtol=1e-12, atol=1e-14)
    assert_allclose(x2, x + g * (g * (x - 4) - 4 * yt), rtol=1e-12, atol=1e-14)
    # On Q = 0 the map is the 1-D cubic map, and it stays on Q = 0.
    df = rng.uniform(-0.5, 0.5, 50)  # f = df + y > 0
    ntk = eos_manifold_ntk(df, kappa, y)
    g, x, yt = uv_scaled_variables(df, ntk, eta, kappa, y)
    assert_allclose(x, 2 * (g + yt), rtol=1e-14)
    df2, ntk2 = uv_step(df, ntk, eta, kappa, y)
    g2, _, _ = uv_scaled_variables(df2, ntk2, eta, kappa, y)
    assert_allclose(g2, eos_map(g, yt), rtol=1e-12, atol=1e-15)
    assert_allclose(ntk2, eos_manifold_ntk(df2, kappa, y), rtol=1e-12)


def test_eos_map_fixed_points():
    yt = np.linspace(0.1, 1.9, 19)
    assert_allclose(eos_map_derivative(0.0, yt), eos_fixed_point_multiplier(yt))
    assert_allclose(eos_map(2.0, yt), 2.0, rtol=1e-15)
    assert_allclose(eos_map(-yt, yt), -yt, rtol=1e-15)
    assert_allclose(eos_map_derivative(2.0, yt), 5 + 2 * yt)
    assert eos_fixed_point_multiplier(1.0) == -1.0  # loses stability at eta_c


def test_route_to_chaos_on_the_uv_model():
    # eta / eta_c = y_tilde with kappa = y = 1.  Thresholds from the equations:
    # the fixed point's multiplier 1 - 2 y_tilde crosses -1 at 1; the 2-cycle's
    # multiplier crosses -1 at y2 (found here by root finding).
    y2 = brentq(lambda a: two_cycle_multiplier(a) + 1.0, 1.01, 1.4, xtol=1e-14)
    assert 1.0 < y2 < 1.3
    etas = [0.5, 0.97, 1.05, y2 - 0.02, y2 + 0.01, 1.52, 1.455, 1.7]
    res = uv_run(etas)
    labels = [r["label"] for r in res]
    periods = [r["period"] for r in res]
    assert labels == [
        "converge",
        "converge",
        "eos",
        "eos",
        "periodic",
        "chaotic",
        "periodic",
        "diverge",
    ]
    assert periods[:5] == [1, 1, 2, 2, 4] and periods[6] == 3
    # The period-2 orbit straddles 2 / eta and has the closed-form exponent.
    assert res[2]["eta_sharpness_min"] < 2 < res[2]["eta_sharpness_max"]
    g1, g2 = eos_two_cycle(1.05)
    along = 0.5 * np.log(abs(two_cycle_multiplier(1.05)))
    across = np.log(abs(1 - g1**2)) + np.log(abs(1 - g2**2))
    # (finite window of an odd number of steps over a 2-cycle: ~1e-3 rel.)
    assert_allclose(res[2]["lyapunov"], max(along, across), rtol=3e-3)
    assert res[5]["lyapunov"] > 0.3 and res[6]["lyapunov"] < 0
    # The period-3 window is the EoS map's own 3-cycle.
    g = 0.1
    for _ in range(5000):
        g = eos_map(g, 1.455)
    orbit = [g]
    for _ in range(300):
        orbit.append(eos_map(orbit[-1], 1.455))
    assert detect_period(orbit) == 3
    # Beyond y_tilde = 2 no start on the EoS manifold stays bounded.
    df0 = np.linspace(-0.9, 0.9, 7) / 2.2
    sim = uv_simulate(df0, eos_manifold_ntk(df0, 1.0, 1.0), 2.2, 1.0, 1.0, 2000)
    assert np.all(sim["diverged"])


def test_lazy_limit_thresholds():
    # y_tilde -> 0 (kappa tiny), f0 = 0: c = eta ntk0 alone decides.
    kappa, y, ntk0 = 1e-10, 1.0, 1.0
    cs = np.array([1.5, 3.0, 4.5])
    sim = uv_simulate(-y, ntk0, cs / ntk0, kappa, y, 3000)
    assert lazy_phase(cs).tolist() == ["converge", "catapult", "diverge"]
    assert lazy_phase(2.0) == "catapult"
    assert sim["diverged"].tolist() == [False, False, True]
    for i, c in enumerate(cs[:2]):
        df, ntk = sim["delta_f"][:, i], sim["ntk"][:, i]
        res = classify_run(0.5 * df * df, uv_sharpness(df, ntk, kappa, y), c)
        assert res["label"] == "converge"
        assert res["catapult"] == (c > 2)
        if c > 2:  # the loss spiked, and the NTK settled below 2 / eta
            assert np.max(df * df) > 100 * df[0] ** 2
            assert c * ntk[-1] / ntk0 < 2


# --------------------------------------------------------------------------
# Unsettled runs (issue 11)
# --------------------------------------------------------------------------


def test_run_still_sharpening_is_not_settled():
    # The MLP case of issue 11: the loss still falls and the tail's eta
    # lambda_H rises 1.76 -> 1.86 below the edge: labelled converge, but the
    # label may not last.
    t = np.arange(2000)
    loss = 1.0 / (1.0 + t)
    sharp = 1.76 + 0.1 * np.clip((t - 1500) / 499, 0.0, 1.0)  # over the tail
    res = classify_run(loss, sharp, 1.0)
    assert res["label"] == "converge" and res["tail"] == 500
    assert not res["settled"]
    halves = 1.76 + 0.1 * np.array([124.5, 374.5]) / 499  # means of the halves
    assert res["drift"] == pytest.approx(halves[1] / halves[0] - 1, rel=1e-12)
    flat = classify_run(loss, np.full(t.size, 1.8), 1.0)
    assert flat["settled"] and flat["drift"] == 0.0


def test_decaying_period_four_is_not_settled():
    # A period-2 orbit with a 4-cycle that still decays onto it: it repeats
    # with period 4 within rtol over the tail, yet shrinks from one half of
    # the tail to the next.
    t = np.arange(4096)
    two = 1.0 + 0.1 * (-1.0) ** t
    four = np.cos(np.pi * t / 2)
    decaying = two + 1e-3 * 0.9998**t * four
    res = classify_run(decaying, decaying, 2.0 / 1.0)
    assert res["period"] == 4 and not res["settled"]
    steady = classify_run(two + 1e-3 * four, two + 1e-3 * four, 2.0)
    assert steady["period"] == 4 and steady["settled"]


def test_uv_run_near_the_doubling_is_not_settled():
    # Regression (issue 11): 2e4 steps just below the 2 -> 4 doubling gave
    # period 4 where 2e5 steps give period 2; it is now flagged unsettled.
    from sharpsk import UVRegressor

    X, y = np.ones((1, 4)) / 2.0, np.array([1.0])
    kw = {"width": 1, "random_state": 3, "lr_units": "critical"}
    res = {}
    for n in (20_000, 200_000):
        uv = UVRegressor(max_iter=n, learning_rate=1.236, **kw).fit(X, y)
        res[n] = classify_run(
            uv.loss_curve_,
            uv.sharpness_trace_,
            uv.learning_rate_,
            orbit=uv.residual_trace_,
        )
    assert (res[20_000]["period"], res[20_000]["settled"]) == (4, False)
    assert (res[200_000]["period"], res[200_000]["settled"]) == (2, True)
