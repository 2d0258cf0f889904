"""The vanishing/exploding gradient laws of BPTT, as computations and as a plot.

With ``targets="last"`` only the last step is scored, so what reaches h_t is the
error at h_T carried back through T - t step Jacobians dh_k/dh_{k-1} =
diag(f'(a_k)) W_h. Per batch row b and lag k = T - t:

    ||dL/dh_{T-k}[b]|| <= (gamma * sigma_max(W_h))^k * ||dL/dh_T[b]||       (bound)

where gamma is the largest slope of f (``reference.ACTIVATION_SLOPE``: 1 for tanh,
relu and identity, 1/4 for sigmoid). With f = identity and W_h = rho * Q, Q
orthogonal, each step multiplies the row by rho * Q^T, so

    ||dL/dh_{T-k}[b]|| = rho^k * ||dL/dh_T[b]||                           (exact law)

and with f = identity and any W_h, ||(W_h^T)^k||_2 >= rho(W_h)^k (spectral radius).

Conventions: every array indexed by lag is (T, B) with row k = lag T - t, k = 0..T-1,
and holds one value per batch row (no max or mean is taken). ``LawCurve`` offers
the batch max of the normalised norms, which is what ``plot_laws`` draws.

The matrix constructors ``orthogonal``, ``scaled_orthogonal`` and
``with_spectral_radius`` are public and meant to be reused by other properties.

Gated cells (W_h = 0, targets="last", full BPTT: the gates depend on x_t alone) obey
exact laws, the constant error carousel: for the LSTM dL/dc_{t-1} = dL/dc_t * f_t, for
the GRU dL/dh_{t-1} = dL/dh_t * z_t. ``carousel_gates`` gives f_t / z_t,
``carousel_law`` carries dL/dc_T (dL/dh_T) back with them, ``carousel_case`` draws a
seeded case with a chosen forget- / update-gate bias and ``measure_carousel`` puts a
backend's dcs (dhs) beside the law as a ``CarouselCurve``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from reference.types import ACTIVATION_SLOPE, RNNParams, RNNSpec

__all__ = [
    "orthogonal", "scaled_orthogonal", "with_spectral_radius", "with_sigma_max", "spectral_radius", "sigma_max",
    "scaled_norm", "scaled_sigma_max", "lag_norms", "decay_bound", "orthogonal_law", "power_norms",
    "LawCurve", "law_case", "measure_law", "gradient_law", "plot_laws", "carousel_gates",
    "CarouselCurve", "carousel_case", "measure_carousel", "carousel_law",
]


# ---------------------------------------------------------------------------
# Matrices with a prescribed spectrum


def _rng(rng):
    """A numpy Generator from a Generator, a seed (int) or None."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def orthogonal(n, rng=None):
    """A random (Haar-distributed) orthogonal n x n matrix: Q of the QR factorisation
    of a Gaussian matrix, with the signs of R's diagonal moved into Q.
    ``rng`` is a numpy Generator or a seed."""
    if int(n) != n or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    Z = _rng(rng).standard_normal((int(n), int(n)))
    Q, R = np.linalg.qr(Z)
    signs = np.sign(np.diag(R))
    signs[signs == 0] = 1.0
    return Q * signs


def scaled_orthogonal(n, rho, rng=None):
    """rho * Q with Q = ``orthogonal(n, rng)``: every singular value and every
    eigenvalue modulus is rho, so sigma_max = spectral radius = rho."""
    if not (np.isfinite(rho) and rho >= 0):
        raise ValueError(f"rho must be a finite number >= 0; got {rho!r}")
    return float(rho) * orthogonal(n, rng)


def spectral_radius(W):
    """max |eigenvalue| of the square matrix W."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(W, dtype=np.float64)))))


def sigma_max(W):
    """The largest singular value of W (its spectral norm)."""
    return float(np.linalg.norm(np.asarray(W, dtype=np.float64), 2))


def scaled_norm(a, axis):
    """The 2-norm along ``axis``, computed as max|v| * ||v / max|v|||, so that a vector
    of 1e-160 has a norm of that size rather than the 0 its squares underflow to."""
    a = np.asarray(a, dtype=np.float64)
    m = np.abs(a).max(axis=axis, keepdims=True)
    safe = np.where(m > 0, m, 1.0)
    return np.squeeze(m, axis=axis) * np.linalg.norm(a / safe, axis=axis)


def scaled_sigma_max(W):
    """sigma_max(W), scaled likewise."""
    W = np.asarray(W, dtype=np.float64)
    m = float(np.abs(W).max(initial=0.0))
    return m * sigma_max(W / m) if m > 0 else 0.0


def with_spectral_radius(W, rho):
    """W rescaled so that its spectral radius is rho (sigma_max(W) >= rho then).
    W must be square with a nonzero spectral radius (a nilpotent W cannot be scaled)."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"W must be a square matrix; got shape {W.shape}")
    if not (np.isfinite(rho) and rho >= 0):
        raise ValueError(f"rho must be a finite number >= 0; got {rho!r}")
    r = spectral_radius(W)
    if not r > 0:
        raise ValueError("W has spectral radius 0 (it is nilpotent); it cannot be scaled to a spectral radius")
    return W * (float(rho) / r)


def with_sigma_max(W, sigma):
    """W rescaled so that its largest singular value is sigma. W must not be 0."""
    W = np.asarray(W, dtype=np.float64)
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0; got {sigma!r}")
    s = sigma_max(W)
    if not s > 0:
        raise ValueError("W is 0; it cannot be scaled to a largest singular value")
    return W * (float(sigma) / s)


def power_norms(W, K):
    """(||(W^T)^k||_2, rho(W)^k) for k = 0..K, two arrays of length K + 1: the
    first is never below the second (identity activation, any W_h)."""
    W = np.asarray(W, dtype=np.float64)
    P = np.eye(W.shape[0])
    norms = []
    for _ in range(K + 1):
        norms.append(sigma_max(P))
        P = W.T @ P
    return np.array(norms), spectral_radius(W) ** np.arange(K + 1)


# ---------------------------------------------------------------------------
# The laws on a backend's dhs


def lag_norms(dhs):
    """(T, B): row k holds ||dL/dh_{T-k}[b]||_2 for every batch row b, from
    ``dhs`` (T, B, H) = dL/dh_1 .. dL/dh_T (``scaled_norm``: no underflow)."""
    dhs = np.asarray(dhs, dtype=np.float64)
    if dhs.ndim != 3:
        raise ValueError(f"dhs must have shape (T, B, H); got shape {dhs.shape}")
    return scaled_norm(dhs[::-1], axis=2)


def decay_bound(dhs, W_h, activation):
    """(T, B): (gamma * sigma_max(W_h))^k * ||dL/dh_T[b]|| at lag k."""
    if activation not in ACTIVATION_SLOPE:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATION_SLOPE))}; got {activation!r}")
    norms = lag_norms(dhs)
    c = ACTIVATION_SLOPE[activation] * sigma_max(W_h)
    return c ** np.arange(len(norms))[:, None] * norms[0]


def orthogonal_law(dhs, rho):
    """(T, B): rho^k * ||dL/dh_T[b]||, the exact law for f = identity, W_h = rho Q."""
    norms = lag_norms(dhs)
    return float(rho) ** np.arange(len(norms))[:, None] * norms[0]


@dataclass(frozen=True)
class LawCurve:
    """The gradient norms of one case against their laws, all (T, B) indexed by
    lag k = T - t (row) and batch row b (column)."""

    activation: str
    gamma: float
    sigma_max: float               # of W_h
    norms: np.ndarray              # ||dL/dh_{T-k}[b]||
    bound: np.ndarray              # (gamma sigma_max)^k ||dL/dh_T[b]||
    exact: Optional[np.ndarray]    # rho^k ||dL/dh_T[b]|| for identity with W_h = rho Q, else None

    @property
    def lags(self):
        return np.arange(len(self.norms))

    @property
    def rate(self):
        """gamma * sigma_max(W_h): the per-step factor of the bound."""
        return self.gamma * self.sigma_max

    def relative(self):
        """(T, B): norms / ||dL/dh_T[b]||, each batch row's curve starting at 1."""
        top = self.norms[0]
        if not (top > 0).all():
            raise ValueError("dL/dh_T is zero for some batch row: the relative norms are undefined")
        return self.norms / top

    def max_relative(self):
        """(T,): the largest relative norm over the batch at each lag. It stays below
        rate^k because every row's relative norm does."""
        return self.relative().max(axis=1)


def _backend(backend):
    if isinstance(backend, str):
        from implementations import get_backend

        return get_backend(backend, dtype="float64")
    return backend


def measure_law(spec, params, xs, targets, h0=None, backend="reference", rho=None):
    """Runs ``backend`` (a name or a backend object) on one case with
    ``spec.targets == "last"`` and returns a ``LawCurve``. Pass ``rho`` when
    W_h = rho Q with Q orthogonal to get the exact law (identity activation only).
    A FloatingPointError of the backend (overflow) propagates."""
    if spec.targets != "last":
        raise ValueError(f"the decay/growth laws need targets='last'; got targets={spec.targets!r}")
    res = _backend(backend).bptt(spec, params, xs, targets, h0=h0)
    if res.dhs is None:
        raise ValueError("the backend returned dhs=None for full BPTT")
    W_h = np.asarray(params.W_h, dtype=np.float64)
    exact = orthogonal_law(res.dhs, rho) if (rho is not None and spec.activation == "identity") else None
    return LawCurve(activation=spec.activation, gamma=ACTIVATION_SLOPE[spec.activation], sigma_max=sigma_max(W_h),
                    norms=lag_norms(res.dhs), bound=decay_bound(res.dhs, W_h, spec.activation), exact=exact)


def law_case(activation, rho, T, H, B, seed=0, *, D=3, O=2, recurrent="orthogonal"):
    """A seeded case (spec, params, xs, targets, h0) for the laws: targets="last",
    linear output, Gaussian inputs and weights of unit-order scale, and W_h either
    ``rho * Q`` (``recurrent="orthogonal"``: sigma_max = rho) or a Gaussian matrix
    scaled to spectral radius rho (``recurrent="gaussian"``: sigma_max >= rho)."""
    rng = np.random.default_rng(seed)
    if recurrent == "orthogonal":
        W_h = scaled_orthogonal(H, rho, rng)
    elif recurrent == "gaussian":
        W_h = with_spectral_radius(rng.standard_normal((H, H)), rho)
    else:
        raise ValueError(f"recurrent must be 'orthogonal' or 'gaussian'; got {recurrent!r}")
    params = RNNParams(W_x=rng.standard_normal((H, D)) / np.sqrt(D), W_h=W_h,
                       b_h=0.1 * rng.standard_normal(H),
                       W_y=rng.standard_normal((O, H)) / np.sqrt(H), b_y=0.1 * rng.standard_normal(O))
    xs = rng.standard_normal((T, B, D))
    targets = rng.standard_normal((T, B, O))
    h0 = 0.5 * rng.standard_normal((B, H))
    spec = RNNSpec(activation=activation, output="linear", targets="last")
    return spec, params, xs, targets, h0


def gradient_law(activation, rho, T=30, H=16, B=4, seed=0, backend="reference", *, recurrent="orthogonal"):
    """``measure_law`` on ``law_case(activation, rho, T, H, B, seed)``; the exact
    law is included for the identity activation with an orthogonal W_h."""
    spec, params, xs, targets, h0 = law_case(activation, rho, T, H, B, seed, recurrent=recurrent)
    return measure_law(spec, params, xs, targets, h0, backend,
                       rho=rho if recurrent == "orthogonal" else None)


# ---------------------------------------------------------------------------
# The plot


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting the laws needs matplotlib: pip install matplotlib "
                          "(or pip install 'bptt-suite[plot]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_laws(path, backend="reference", rhos=(0.5, 0.9, 1.0, 1.1, 1.5),
              activations=("identity", "tanh", "sigmoid", "relu"), T=40, H=16, B=8, seed=0, *,
              carousel_T=200, forget_biases=(0.0, 1.0, 3.0), gru_update_bias=2.0, elman_rho=0.9):
    """Draws the laws into the PNG ``path`` and returns ``path``; log y-scales, the lag
    T - t on the x axes.

    Top, across the figure (``carousel_T`` steps): the vanishing gradient against the
    constant error carousel. An Elman tanh cell with W_h = elman_rho Q (so
    gamma sigma_max(W_h) = elman_rho < 1): its measured max over the batch of
    ||dL/dh_t|| / ||dL/dh_T|| (markers) under its bound elman_rho^(T-t) (dashed); an
    LSTM for each forget-gate bias in ``forget_biases`` and a GRU with update-gate bias
    ``gru_update_bias``, all with W_h = 0 (``carousel_case``), where the law is exact:
    the measured ||dL/dc_t|| (LSTM) or ||dL/dh_t|| (GRU), normalised the same way
    (markers), on the law's ||dL/dc_T * prod f_s|| or ||dL/dh_T * prod z_s|| (solid).

    Below, one panel per activation of the Elman cell: for each rho (W_h = rho Q, Q
    orthogonal, so sigma_max(W_h) = rho) the measured max over the batch of
    ||dL/dh_t|| / ||dL/dh_T|| (solid, markers) and the bound (gamma rho)^(T-t)
    (dashed, same colour); for the identity activation the bound is the exact law
    rho^(T-t). A case whose backend overflows, or does not implement the cell, is left
    out and marked so in the legend."""
    plt = _pyplot()

    be = _backend(backend)
    n = len(activations)
    cols = min(n, 2) if n else 2
    rows = -(-n // cols)
    fig = plt.figure(figsize=(6.2 * cols, 5.2 + 4.6 * rows))
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[5.2] + [4.6] * rows)
    _carousel_panel(fig.add_subplot(grid[0, :]), plt, be, carousel_T, H, B, seed,
                    forget_biases, gru_update_bias, elman_rho)
    for k, activation in enumerate(activations):
        _activation_panel(fig.add_subplot(grid[1 + k // cols, k % cols]), plt, be, activation, rhos, T, H, B, seed)
    fig.suptitle(f"Gradient norm against the lag, targets='last', H = {H}, B = {B}, backend {be.name!r}",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.975))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _positive(lags, values):
    """The lags and values that can go on a log axis (exact zeros cannot)."""
    pos = values > 0
    return lags[pos], values[pos]


def _carousel_panel(ax, plt, be, T, H, B, seed, forget_biases, gru_update_bias, elman_rho):
    from matplotlib.lines import Line2D

    lags = np.arange(T)
    every = max(1, T // 40)
    handles = []

    def note(exc):
        return f" ({'overflow' if isinstance(exc, FloatingPointError) else 'not implemented by the backend'})"

    # Elman: a bound only
    colour = "tab:red"
    label = f"Elman tanh, W_h = {elman_rho:g} Q: gamma sigma_max(W_h) = {elman_rho:g}"
    try:
        measured = gradient_law("tanh", elman_rho, T=T, H=H, B=B, seed=seed, backend=be).max_relative()
        ax.plot(*_positive(lags, measured), linestyle="none", marker="o", markersize=3.2, markevery=every,
                color=colour)
    except (FloatingPointError, NotImplementedError) as exc:
        label += note(exc)
    ax.plot(lags, float(elman_rho) ** lags, linestyle="--", color=colour, linewidth=1.3)
    handles.append(Line2D([], [], color=colour, marker="o", markersize=3.2, linestyle="--",
                          label=label + f"; bound {elman_rho:g}^(T-t)"))

    cases = [("lstm", b, plt.get_cmap("Blues")(0.45 + 0.5 * i / max(1, len(forget_biases) - 1)),
              f"LSTM, W_h = 0, forget-gate bias {b:g}: law ||dL/dc_T * prod f_s||")
             for i, b in enumerate(forget_biases)]
    cases.append(("gru", gru_update_bias, "tab:orange",
                  f"GRU, W_h = 0, update-gate bias {gru_update_bias:g}: law ||dL/dh_T * prod z_s||"))
    for cell, bias, colour, label in cases:
        try:
            spec, params, xs, targets, h0, c0 = carousel_case(cell, bias, T, H, B, seed)
            curve = measure_carousel(spec, params, xs, targets, h0, c0, backend=be)
            ax.plot(*_positive(lags, curve.law_max_relative()), linestyle="-", color=colour, linewidth=1.4)
            ax.plot(*_positive(lags, curve.max_relative()), linestyle="none", marker="o", markersize=3.2,
                    markevery=every, color=colour)
        except (FloatingPointError, NotImplementedError) as exc:
            label += note(exc)
        handles.append(Line2D([], [], color=colour, marker="o", markersize=3.2, label=label))
    handles += [Line2D([], [], color="black", marker="o", markersize=3.2, linestyle="none",
                       label="measured: max over the batch of ||dL/d state_t|| / ||dL/d state_T||"),
                Line2D([], [], color="black", linestyle="-", label="exact law (product of the gates)"),
                Line2D([], [], color="black", linestyle="--", label="bound (gamma sigma_max(W_h))^(T-t)")]
    ax.set_yscale("log")
    ax.set_xlabel("lag T - t")
    ax.set_ylabel("||dL/d state_t|| / ||dL/d state_T||\n(state c for the LSTM, h otherwise)")
    ax.set_title(f"Vanishing gradients and the constant error carousel, T = {T}: an Elman cell with "
                 f"gamma sigma_max(W_h) < 1 loses the gradient geometrically;\nwith W_h = 0 an LSTM's "
                 f"dL/dc_(t-1) = dL/dc_t * f_t and a GRU's dL/dh_(t-1) = dL/dh_t * z_t exactly", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="lower left")


def _activation_panel(ax, plt, be, activation, rhos, T, H, B, seed):
    from matplotlib.lines import Line2D

    colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(rhos)))
    lags = np.arange(T)
    gamma = ACTIVATION_SLOPE[activation]
    handles = []
    for rho, colour in zip(rhos, colours):
        bound = (gamma * rho) ** lags
        try:
            curve = gradient_law(activation, rho, T=T, H=H, B=B, seed=seed, backend=be)
            measured = curve.max_relative()
        except FloatingPointError:
            measured = None
        ax.plot(lags, bound, linestyle="--", color=colour, linewidth=1.2)
        if measured is None or not np.isfinite(measured).all():
            label = f"rho = {rho:g}: overflow"
        else:
            pos = measured > 0          # exact zeros (dead relu units) cannot go on a log axis
            ax.plot(lags[pos], measured[pos], linestyle="-", marker="o", markersize=2.5,
                    color=colour, linewidth=1.4)
            label = f"rho = {rho:g}" + ("" if pos.all() else
                                        f" (0 from lag {int(np.flatnonzero(~pos)[0])})")
        handles.append(Line2D([], [], color=colour, marker="o", markersize=3, label=label))
    handles += [Line2D([], [], color="black", linestyle="-", label="measured (max over batch)"),
                Line2D([], [], color="black", linestyle="--",
                       label=f"bound ({gamma:g} rho)^(T-t)" if gamma != 1 else "bound rho^(T-t)")]
    ax.set_yscale("log")
    ax.set_xlabel("lag T - t")
    ax.set_ylabel("||dL/dh_t|| / ||dL/dh_T||")
    kind = "exact law = bound" if activation == "identity" else f"gamma = {gamma:g}"
    ax.set_title(f"Elman, f = {activation} ({kind}), W_h = rho Q (Q orthogonal), T = {T}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(handles=handles, fontsize=7.5, loc="best")


# ---------------------------------------------------------------------------
# Gated cells: the exact carousel laws (W_h = 0)


def carousel_gates(spec, params, xs):
    """(T, B, H): the gate that carries the gradient back one step of a gated cell
    whose W_h is 0, so that the gates depend on x_t alone: the LSTM's forget gate
    f_t = sigma(W_xf x_t + b_f), with dL/dc_{t-1} = dL/dc_t * f_t, or the GRU's update
    gate z_t = sigma(W_xz x_t + b_z), with dL/dh_{t-1} = dL/dh_t * z_t."""
    from reference.cells import CELLS, sigmoid

    cell = CELLS[spec.cell]
    if cell.carousel_gate is None:
        raise ValueError(f"spec.cell must be a gated cell ('lstm' or 'gru'); got {spec.cell!r}")
    W_h = np.asarray(params.W_h, dtype=np.float64)
    if np.any(W_h != 0):
        raise ValueError("params.W_h must be 0: the carousel laws hold when the gates depend on x_t alone")
    H = W_h.shape[1]
    rows = cell.block(cell.carousel_gate, H)
    xs = np.asarray(xs, dtype=np.float64)
    with np.errstate(over="ignore"):
        return sigmoid(xs @ np.asarray(params.W_x, dtype=np.float64)[rows].T + np.asarray(params.b_h)[rows])


def _carousel_state(cell):
    """The state the carousel gate carries back: the last of the row's states (c for the
    LSTM, h for the GRU)."""
    return cell.state[-1]


@dataclass(frozen=True)
class CarouselCurve:
    """A gated cell's gradient against its exact carousel law (W_h = 0, targets="last"),
    all (T, B) indexed by lag k = T - t (row) and batch row b (column)."""

    cell: str
    state: str                     # "c" (LSTM) or "h" (GRU): what the norms are of
    gate: str                      # "f" (LSTM) or "z" (GRU)
    norms: np.ndarray              # ||dL/d{state}_{T-k}[b]||, from the backend
    law: np.ndarray                # ||dL/d{state}_T[b] * prod_{s=T-k+1..T} gate_s[b]||
    measured: np.ndarray           # (T, B, H): the backend's dL/d{state}_t, t = 1..T (time order)
    exact: np.ndarray              # (T, B, H): the law's values, time order

    @property
    def lags(self):
        return np.arange(len(self.norms))

    def max_relative(self):
        """(T,): the largest over the batch of norms / ||dL/d{state}_T[b]||."""
        return (self.norms / self.norms[0]).max(axis=1)

    def law_max_relative(self):
        """(T,): the same of the law (its lag-0 value is the measured one)."""
        return (self.law / self.law[0]).max(axis=1)


def carousel_case(cell, gate_bias, T, H, B, seed=0, *, D=3, O=2, input_scale=0.5):
    """A seeded case (spec, params, xs, targets, h0, c0) for the exact carousel laws of a
    gated ``cell``: W_h = 0, targets="last", linear output, the bias of the carousel gate
    (the LSTM's forget gate, the GRU's update gate) set to ``gate_bias`` and every other
    bias of unit-order scale; W_x is Gaussian with rows of norm about ``input_scale``, so
    the gate is sigma(gate_bias + about N(0, input_scale^2)). c0 is None for the GRU."""
    from reference.cells import CELLS

    row = CELLS[cell]
    if row.carousel_gate is None:
        raise ValueError(f"cell must be a gated cell ('lstm' or 'gru'); got {cell!r}")
    rng = np.random.default_rng(seed)
    shapes = {name: shape for name, (shape, _) in row.shapes(D, H, O).items()}
    values = {}
    for name, shape in shapes.items():
        if name == "W_h":
            values[name] = np.zeros(shape)
        elif name == "W_x":
            values[name] = rng.standard_normal(shape) * (input_scale / np.sqrt(D))
        elif name == "W_y":
            values[name] = rng.standard_normal(shape) / np.sqrt(H)
        else:
            values[name] = 0.1 * rng.standard_normal(shape)
    values["b_h"][row.block(row.carousel_gate, H)] = gate_bias
    xs = rng.standard_normal((T, B, D))
    targets = rng.standard_normal((T, B, O))
    h0 = 0.5 * rng.standard_normal((B, H))
    c0 = 0.5 * rng.standard_normal((B, H)) if "c" in row.state else None
    spec = RNNSpec(activation="tanh", output="linear", targets="last", cell=cell)
    return spec, RNNParams(**values), xs, targets, h0, c0


def measure_carousel(spec, params, xs, targets, h0=None, c0=None, backend="reference"):
    """Runs ``backend`` (a name or a backend object) on one gated case with W_h = 0 and
    ``spec.targets == "last"`` (full BPTT) and returns a ``CarouselCurve``: its
    dL/dc_t (LSTM, ``res.dcs``) or dL/dh_t (GRU, ``res.dhs``) against the exact law
    dL/dc_{t-1} = dL/dc_t * f_t, resp. dL/dh_{t-1} = dL/dh_t * z_t, carried back from the
    backend's own value at t = T with the gates of ``carousel_gates``."""
    from reference.cells import CELLS

    if spec.targets != "last":
        raise ValueError(f"the carousel laws need targets='last'; got targets={spec.targets!r}")
    gates = carousel_gates(spec, params, xs)    # checks the cell and W_h = 0
    cell = CELLS[spec.cell]
    state = _carousel_state(cell)
    kwargs = {"c0": c0} if c0 is not None else {}
    res = _backend(backend).bptt(spec, params, xs, targets, h0=h0, **kwargs)
    measured = getattr(res, f"d{state}s")
    if measured is None:
        raise ValueError(f"the backend returned d{state}s=None for full BPTT")
    measured = np.asarray(measured, dtype=np.float64)
    exact = carousel_law(measured[-1], gates)
    return CarouselCurve(cell=spec.cell, state=state, gate=cell.carousel_gate,
                         norms=lag_norms(measured), law=lag_norms(exact), measured=measured, exact=exact)


def carousel_law(last, gates):
    """(T, B, H), time order: the exact law's dL/d{state}_t = last * prod_{s=t+1..T} gate_s
    for t = 1..T, from ``last`` = dL/d{state}_T (B, H) and ``gates`` (T, B, H) = gate_1..gate_T."""
    gates = np.asarray(gates, dtype=np.float64)
    T = gates.shape[0]
    out = np.empty_like(gates)
    out[T - 1] = last
    for t in range(T - 1, 0, -1):        # out[t] = dL/d{state}_{t+1}, gates[t] = gate_{t+1}
        out[t - 1] = out[t] * gates[t]
    return out
