"""Batched L2-regularised logistic regression: a whole grid of C values solved at once, in torch float64.

Each C is the problem scikit-learn's ``LogisticRegression(solver="lbfgs")`` solves, in its scaling
(``sklearn/linear_model/_logistic.py``, ``l2_reg_strength = 1 / (C * n_samples)``)::

    min_W,b  mean_i loss(x_i W + b, y_i) + ||W||² / (2 C N)        (the intercept b is not penalised)

which has the same minimiser as ``C · sum_i loss_i + ||W||² / 2``. ``loss="softmax"`` is the multinomial
log-loss (K logits); ``loss="sigmoid"`` is the binary log-loss of each target column on its own (one column
for binary tasks, one per label for multi-label, i.e. one-vs-rest).

How it is fast: all C values (and, for sigmoid, all labels) are the columns of one matrix, so every L-BFGS
iteration is one (N, D) @ (D, B·K) product instead of B small ones, and converged columns leave the batch.
How it converges on raw, badly scaled features (the reference probe does not standardise): the problem is
solved in the principal axes of the centred features, each axis scaled by the inverse square root of the
Hessian's value at W = 0 (``s0 · variance + 1 / (C N)``), so L-BFGS starts from a near-identity Hessian.
The rotation and the centring (which the free intercept absorbs) change the coordinates, not the minimiser.
How it converges at large C on separable data (N < D, common for small medical sets), where the optimum lies
far out on a flat valley and L-BFGS crawls: after 100 iterations the columns still running finish with
damped Newton steps, whose Hessian skips the samples far from the decision boundary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

Loss = Literal["softmax", "sigmoid"]
_MEMORY = 10  # L-BFGS correction pairs (scipy's default)
_ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
_ULP = 8 * float(np.finfo(np.float64).eps)  # line-search slack: objective changes below this are rounding
_MAX_HALVINGS = 40  # a column whose step shrinks past 2**-40 has hit float64 precision: it stops
_LBFGS_ITER = 100  # L-BFGS iterations before the columns still running switch to Newton (when affordable)
_NEWTON_ITER = 50
_NEWTON_MAX_DIM = 2048  # Newton only when the Hessian of one column, (P·K)², fits in 32 MB
_RANK_TOL = 1e-12  # principal axes with a smaller share of the largest variance are rounding noise
_PRUNE = 1e-6  # Newton's Hessian leaves out samples whose curvature is below this share of the largest
_RIDGE = 1e-12  # relative ridge on Newton's Hessian: softmax intercepts are free along (1, ..., 1)


def _float64(x: np.ndarray) -> torch.Tensor:
    """A float64 tensor of `x` (copied when float64 but read-only, e.g. a memory-mapped feature cache)."""
    x = np.asarray(x, dtype=np.float64)
    return torch.from_numpy(x if x.flags.writeable else x.copy())


@dataclass(frozen=True)
class LogRegFit:
    """The solutions of a grid of C values, in the original feature coordinates.

    Attributes:
        coef: (n_C, D, K) weights; K = classes (softmax) or target columns (sigmoid).
        intercept: (n_C, K) biases.
        n_iter: (n_C, K) iterations, L-BFGS and Newton together (softmax: the same for every k).
        converged: (n_C, K) whether the max-abs gradient reached `tol` (else max_iter or precision ran out).
        loss: the loss the columns were fitted with.
    """

    coef: np.ndarray
    intercept: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    loss: Loss

    def predict_proba(self, x: np.ndarray, *, n_threads: int | None = 1) -> np.ndarray:
        """(n_C, N, K) class probabilities (softmax) or per-column positive probabilities (sigmoid)."""
        with torch_threads(n_threads):
            xt = _float64(x)
            z = xt @ torch.as_tensor(self.coef) + torch.as_tensor(self.intercept)[:, None]  # (n_C, N, K)
            return (torch.softmax(z, -1) if self.loss == "softmax" else torch.sigmoid(z)).numpy()


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch with `n` intra-op threads (None: leave the setting alone), restoring it afterwards."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Problem:
    """A batch of B columns sharing rotated features Z; column b has penalty reg[b] and target col[b]."""

    z: torch.Tensor  # (N, P) centred features in principal axes, then a column of ones (P = rank + 1)
    y: torch.Tensor  # (N, K) one-hot classes (softmax) or 0/1 target columns (sigmoid)
    reg: torch.Tensor  # (B,) 1 / (C N)
    col: torch.Tensor  # (B,) sigmoid: target column of each batch column; softmax: unused
    scale: torch.Tensor  # (B, P, 1) theta = scale * u: the preconditioning change of variables
    loss: Loss

    @property
    def width(self) -> int:
        return self.y.shape[1] if self.loss == "softmax" else 1


def _rotation(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred features in their principal axes, then a column of ones.

    Axes without variance are dropped (with N < D there are at least D - N + 1): the features have no
    component along them, so neither has the solution, and the problem shrinks to min(N - 1, D) + 1 unknowns.

    Returns:
        (Z (N, r + 1), V (D, r), mean (D,), variances (r,)) for the r axes kept.
    """
    xt = _float64(x)
    mean = xt.mean(0)
    xc = xt - mean  # (N, D)
    var, v = torch.linalg.eigh(xc.T @ xc / len(xt))  # ascending variances of the principal axes
    keep = var > _RANK_TOL * var.max().clamp_min(1e-300)
    var, v = var[keep], v[:, keep]
    z = torch.cat([xc @ v, torch.ones(len(xt), 1, dtype=torch.float64)], dim=1)
    return z, v, mean, var


def _loss_grad(p: _Problem, theta: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Objective (b,) and its gradient (b, P, K) for the batch columns `idx`, parameters theta (b, P, K)."""
    n, b, k = p.z.shape[0], len(idx), theta.shape[2]
    logits = (p.z @ theta.permute(1, 0, 2).reshape(-1, b * k)).view(n, b, k)  # (N, b, K)
    if p.loss == "softmax":
        loss = torch.logsumexp(logits, -1) - (logits * p.y[:, None, :]).sum(-1)  # (N, b)
        resid = torch.softmax(logits, -1) - p.y[:, None, :]  # (N, b, K)
    else:
        target = p.y[:, p.col[idx]]  # (N, b)
        loss = F.softplus(logits[..., 0]) - target * logits[..., 0]
        resid = (torch.sigmoid(logits[..., 0]) - target)[..., None]  # (N, b, 1)
    grad = (p.z.T @ resid.reshape(n, b * k)).view(-1, b, k).permute(1, 0, 2) / n  # (b, P, K)
    penalised = theta.clone()
    penalised[:, -1] = 0.0  # the intercept row is not penalised
    reg = p.reg[idx]
    f = loss.mean(0) + 0.5 * reg * (penalised**2).sum((1, 2))
    return f, grad + reg[:, None, None] * penalised


def _direction(g: torch.Tensor, mem: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """L-BFGS two-loop recursion, batched over rows: -H g for g (b, n)."""
    q, alphas = -g, []
    for s, y, rho in reversed(mem):
        a = rho * (s * q).sum(1)
        alphas.append(a)
        q = q - a[:, None] * y
    if mem:  # initial Hessian gamma·I, gamma = s'y / y'y of the newest usable pair (else 1)
        s, y, rho = mem[-1]
        gamma = torch.where(rho > 0, (s * y).sum(1) / (y * y).sum(1).clamp_min(1e-300), torch.ones_like(rho))
        q = q * gamma[:, None]
    for (s, y, rho), a in zip(mem, reversed(alphas), strict=True):
        q = q + (a - rho * (y * q).sum(1))[:, None] * s
    return q


def _line_search(p: _Problem, u: torch.Tensor, f: torch.Tensor, g: torch.Tensor, d: torch.Tensor,
                 idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Backtracking (Armijo) from step 1; only the columns still failing are re-evaluated.

    Returns:
        (new u, new f, new gradient in u, new gradient in theta, ok) where ok (b,) is False for columns that
        found no decrease before the step underflowed (they keep their old values).
    """
    slope = (g * d).sum(1)  # (b,) < 0
    step = torch.ones(len(idx), dtype=u.dtype)
    un, fn, gun, gtn = u.clone(), f.clone(), g.clone(), torch.zeros_like(g)
    todo = torch.arange(len(idx))
    for _ in range(_MAX_HALVINGS):
        trial = u[todo] + step[todo, None] * d[todo]
        sc = p.scale[idx[todo]]
        ft, gt = _loss_grad(p, trial.view(len(todo), sc.shape[1], -1) * sc, idx[todo])
        # the slack of a few ulp of f lets columns that are converged to rounding take their last steps
        ok = ft <= f[todo] + _ARMIJO * step[todo] * slope[todo] + _ULP * f[todo].abs()
        done = todo[ok]
        un[done], fn[done], gtn[done] = trial[ok], ft[ok], gt[ok].flatten(1)
        gun[done] = (gt[ok] * sc[ok]).flatten(1)
        todo = todo[~ok]
        if len(todo) == 0:
            break
        step[todo] *= 0.5
    ok = torch.ones(len(idx), dtype=torch.bool)
    ok[todo] = False
    return un, fn, gun, gtn, ok


@dataclass
class _State:
    """Optimisation state of all B columns: u (B, n) variables; the columns in `active` are still running."""

    u: torch.Tensor
    n_iter: torch.Tensor  # (B,)
    converged: torch.Tensor  # (B,) bool
    active: torch.Tensor  # indices of the columns still being optimised

    def evaluate(self, p: _Problem, tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(f, gradient in u, gradient in theta) of the active columns; converged ones leave `active`."""
        idx = self.active
        sc = p.scale[idx]
        f, gt = _loss_grad(p, self.u[idx].view(len(idx), sc.shape[1], -1) * sc, idx)
        done = gt.flatten(1).abs().amax(1) <= tol
        self.converged[idx[done]] = True
        self.active = idx[~done]
        return f[~done], (gt * sc)[~done].flatten(1), gt[~done].flatten(1)


def _lbfgs(p: _Problem, st: _State, *, tol: float, max_iter: int) -> None:
    """Minimise the active columns at once with L-BFGS; converged columns leave the batch."""
    f, g, gt = st.evaluate(p, tol)
    mem: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for _ in range(max_iter):
        if len(st.active) == 0:
            return
        d = _direction(g, mem)
        bad = (g * d).sum(1) >= 0  # not a descent direction: fall back to steepest descent
        d[bad] = -g[bad]
        cur = st.u[st.active]
        new, fn, gn, gtn, ok = _line_search(p, cur, f, g, d, st.active)
        s, y = new - cur, gn - g
        sy = (s * y).sum(1)
        mem = (mem + [(s, y, torch.where(sy > 1e-12 * (y * y).sum(1), 1.0 / sy, torch.zeros_like(sy)))])[-_MEMORY:]
        st.u[st.active] = new
        st.n_iter[st.active] += 1
        done = gtn.abs().amax(1) <= tol
        st.converged[st.active[done]] = True
        keep = ~done & ok  # not ok: the float64 precision floor, these columns cannot improve further
        st.active, f, g = st.active[keep], fn[keep], gn[keep]
        mem = [(s_[keep], y_[keep], r_[keep]) for s_, y_, r_ in mem]


def _hessian(p: _Problem, theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(b, P·K, P·K) Hessian in theta of the active columns (a small ridge keeps it positive definite).

    Softmax: sum_i (diag(q_i) - q_i q_i') ⊗ z_i z_i' / N; sigmoid: the K = 1 case, q(1 - q).
    """
    n, b, k = p.z.shape[0], len(idx), theta.shape[2]
    logits = (p.z @ theta.permute(1, 0, 2).reshape(-1, b * k)).view(n, b, k)  # (N, b, K)
    if p.loss == "softmax":
        q = torch.softmax(logits, -1)
        w = torch.diag_embed(q) - q[..., :, None] * q[..., None, :]  # (N, b, K, K)
    else:
        q = torch.sigmoid(logits)
        w = (q * (1 - q))[..., None]  # (N, b, 1, 1)
    h = torch.empty(b, p.z.shape[1], k, p.z.shape[1], k, dtype=theta.dtype)
    curv = w.diagonal(dim1=2, dim2=3).amax(2)  # (N, b) largest curvature of each sample
    for j in range(b):  # one (P, P) product per column and class pair: memory stays O(N P)
        # Samples far from the boundary add ~nothing: at large C they are most of them (85% on a 4.7k-image
        # set). Any positive-definite approximation gives a descent direction, so dropping them is safe.
        rows = curv[:, j] > _PRUNE * curv[:, j].max()
        zj, wj = p.z[rows], w[rows, j]
        for a in range(k):
            for c in range(k):
                h[j, :, a, :, c] = (zj * wj[:, a, c, None]).T @ zj / n
    h = h.view(b, -1, h.shape[1] * k)
    pen = torch.ones(p.z.shape[1], k, dtype=theta.dtype)
    pen[-1] = 0.0
    ridge = p.reg[idx, None] * pen.flatten() + _RIDGE * h.diagonal(dim1=1, dim2=2).amax(1, keepdim=True)
    return h + torch.diag_embed(ridge)


def _newton(p: _Problem, st: _State, *, tol: float, max_iter: int) -> None:
    """Damped Newton on the active columns: the fallback for the ill-conditioned ones (large C, separable)."""
    f, g, _ = st.evaluate(p, tol)
    for _ in range(max_iter):
        if len(st.active) == 0:
            return
        idx, sc = st.active, p.scale[st.active]
        s = sc.expand(-1, -1, p.width).flatten(1)  # (b, n) d theta / d u
        h = s[:, :, None] * _hessian(p, st.u[idx].view(len(idx), sc.shape[1], -1) * sc, idx) * s[:, None, :]
        d = -torch.cholesky_solve(g[..., None], torch.linalg.cholesky(h))[..., 0]
        new, fn, gn, gtn, ok = _line_search(p, st.u[idx], f, g, d, idx)
        st.u[idx] = new
        st.n_iter[idx] += 1
        done = gtn.abs().amax(1) <= tol
        st.converged[idx[done]] = True
        keep = ~done & ok
        st.active, f, g = idx[keep], fn[keep], gn[keep]


def _targets(y: np.ndarray, loss: Loss, n_classes: int | None) -> torch.Tensor:
    """(N, K) float64 targets: one-hot classes (softmax) or the 0/1 columns (sigmoid; (N,) becomes (N, 1))."""
    y = np.asarray(y)
    if loss == "softmax":
        k = int(n_classes if n_classes is not None else y.max() + 1)
        return F.one_hot(torch.as_tensor(y.astype(np.int64)), k).to(torch.float64)
    return torch.as_tensor(y.reshape(len(y), -1), dtype=torch.float64)


def fit_logreg(x: np.ndarray, y: np.ndarray, Cs: Sequence[float], *, loss: Loss, n_classes: int | None = None,
               tol: float = 1e-8, max_iter: int = 1000, init: LogRegFit | None = None,
               n_threads: int | None = 1) -> LogRegFit:
    """Solve L2-regularised logistic regression for every C of `Cs` in one batched run.

    L-BFGS runs on every column at once; the few still running after 100 iterations (large C on separable
    data, where the optimum lies far out on a flat valley) finish with Newton's method when its Hessian is
    small enough (P·K <= 2048), else with more L-BFGS.

    Args:
        x: (N, D) features.
        y: softmax: (N,) int classes 0..K-1; sigmoid: (N,) 0/1 or (N, L) 0/1 columns, each its own problem.
        Cs: inverse regularisation strengths, as scikit-learn's ``C``.
        loss: ``"softmax"`` (multinomial) or ``"sigmoid"`` (binary / one-vs-rest).
        n_classes: softmax classes K (default: max(y) + 1).
        tol: stop a column when the max-abs gradient of the mean-scaled objective is at most this
            (scikit-learn stops its L-BFGS at the same quantity <= its ``tol``, 1e-4 by default).
        max_iter: iterations at most (L-BFGS and Newton together).
        init: a fit with one solution per C (same shapes) to start from; default zeros, as scikit-learn.
        n_threads: torch threads while solving (None: torch's setting). One by default: an iteration is
            dozens of small operations, and on a machine whose cores are busy (a benchmark grid running
            cells side by side) every thread synchronisation waits for a descheduled thread; two threads
            were 15-30x slower than one on a shared 2-core machine.

    Returns:
        The solutions, in the coordinates of `x`.
    """
    with torch_threads(n_threads):
        return _fit(x, y, Cs, loss=loss, n_classes=n_classes, tol=tol, max_iter=max_iter, init=init)


def _fit(x: np.ndarray, y: np.ndarray, Cs: Sequence[float], *, loss: Loss, n_classes: int | None, tol: float,
         max_iter: int, init: LogRegFit | None) -> LogRegFit:
    z, v, mean, var = _rotation(x)
    p, n_c, cols = _problem(z, var, _targets(y, loss, n_classes), Cs, loss)
    theta0 = torch.zeros(len(p.reg), z.shape[1], p.width, dtype=torch.float64)
    if init is not None:
        theta0 = _to_rotated(init, v, mean, cols)
    st = _State((theta0 / p.scale).flatten(1), torch.zeros(len(p.reg), dtype=torch.long),
                torch.zeros(len(p.reg), dtype=torch.bool), torch.arange(len(p.reg)))
    _lbfgs(p, st, tol=tol, max_iter=min(max_iter, _LBFGS_ITER))
    left = max_iter - min(max_iter, _LBFGS_ITER)
    if len(st.active) and left:  # the ill-conditioned columns (large C on separable data) are left
        if z.shape[1] * p.width <= _NEWTON_MAX_DIM:
            _newton(p, st, tol=tol, max_iter=min(left, _NEWTON_ITER))
        else:
            _lbfgs(p, st, tol=tol, max_iter=left)
    theta = st.u.view(len(p.reg), -1, p.width) * p.scale  # (B, P, K)
    return _to_original(theta, v, mean, n_c, cols, st.n_iter, st.converged, loss)


def _problem(z: torch.Tensor, var: torch.Tensor, targets: torch.Tensor, Cs: Sequence[float],
             loss: Loss) -> tuple[_Problem, int, int]:
    """The batch of columns (C, or (C, target column) for sigmoid) and its preconditioning; (problem, n_C, cols)."""
    n, k = targets.shape
    c = torch.as_tensor(np.asarray(Cs, dtype=np.float64))
    cols = 1 if loss == "softmax" else k
    reg = (1.0 / (c * n)).repeat_interleave(cols)  # (B,) batch column b = (C index, target column)
    s0 = (k - 1) / k**2 if loss == "softmax" else 0.25  # Hessian of the loss per unit variance at W = 0
    curvature = torch.cat([s0 * var[None] + reg[:, None], torch.full((len(reg), 1), s0, dtype=torch.float64)], 1)
    scale = curvature.rsqrt()[..., None]  # (B, P, 1)
    return _Problem(z, targets, reg, torch.arange(cols).repeat(len(c)), scale, loss), len(c), cols


def _to_rotated(fit: LogRegFit, v: torch.Tensor, mean: torch.Tensor, cols: int) -> torch.Tensor:
    """(B, P, width) rotated parameters of `fit` (the inverse of `_to_original`)."""
    w = torch.as_tensor(fit.coef)  # (n_C, D, K)
    b = torch.as_tensor(fit.intercept) + torch.einsum("d,cdk->ck", mean, w)  # (n_C, K)
    theta = torch.cat([torch.einsum("de,cdk->cek", v, w), b[:, None]], 1)  # (n_C, P, K)
    return theta if cols == 1 else theta.permute(0, 2, 1).reshape(-1, theta.shape[1], 1)


def _to_original(theta: torch.Tensor, v: torch.Tensor, mean: torch.Tensor, n_c: int, cols: int,
                 n_iter: torch.Tensor, conv: torch.Tensor, loss: Loss) -> LogRegFit:
    """Undo the rotation and centring; sigmoid columns are regrouped per C."""
    if cols > 1:  # (n_C * L, P, 1) -> (n_C, P, L)
        theta = theta.view(n_c, cols, -1).permute(0, 2, 1)
    w = torch.einsum("de,cek->cdk", v, theta[:, :-1])  # (n_C, D, K)
    b = theta[:, -1] - torch.einsum("d,cdk->ck", mean, w)  # (n_C, K)
    k = w.shape[2]
    shape = (n_c, k) if cols > 1 else (n_c, 1)
    n_iter, conv = n_iter.view(shape).expand(n_c, k), conv.view(shape).expand(n_c, k)
    return LogRegFit(w.numpy(), b.numpy(), n_iter.numpy().copy(), conv.numpy().copy(), loss)
