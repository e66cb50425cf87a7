"""scikit-learn's warm-started L-BFGS logistic regression, fit after fit, without its per-call overhead.

The reference probe (PROTOCOLS.md §1.6) runs ``LogisticRegression(solver="lbfgs", warm_start=True)`` once per C
with scikit-learn's defaults: at most 100 iterations, ``gtol`` 1e-4. On raw features many of those fits stop at
the cap, far from the optimum, so its numbers are those of that trajectory and no converged solver gives them.
`WarmLBFGS` walks the same trajectory: the same objective in the same scaling and parameter layout
(``sklearn/linear_model/_linear_loss.py``: mean log-loss + ``||W||² / (2 C N)``, coefficients of one feature
contiguous, the intercept last), computed in the features' dtype as scikit-learn does, the same
``scipy.optimize.minimize(method="L-BFGS-B")`` options, and the coefficients rounded to the features' dtype
between fits (scikit-learn stores ``coef_`` in ``X.dtype`` and restarts from it).

What it saves: input validation, label encoding, array-namespace dispatch and copies on every fit and every
objective call (about two thirds of the reference's time on small data). What it cannot save: the fits are
sequential (each starts where the previous one stopped) and each iteration needs two passes over the data.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import optimize
from scipy.special import expit, softmax
from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss

_FTOL = 64 * float(np.finfo(float).eps)  # scikit-learn's L-BFGS-B options
_MAXLS = 50


class WarmLBFGS:
    """One L2 logistic regression refitted at successive C values, each fit starting from the last solution.

    Args:
        loss: ``"sigmoid"`` (one logit, binary 0/1 targets) or ``"softmax"`` (multinomial, integer classes).
        n_classes: number of classes for ``"softmax"``.
        max_iter: L-BFGS iterations per fit (scikit-learn's default 100).
        tol: L-BFGS-B ``gtol`` (scikit-learn's default 1e-4).

    Attributes:
        coef_: (K, D + 1) float64 parameters after the last fit (K = 1 for sigmoid and for softmax on two present
            classes; intercepts in the last column).
        classes_: the classes of the last softmax fit, in column order.
        n_iter_: iterations of the last fit.
    """

    def __init__(self, loss: Literal["sigmoid", "softmax"], n_classes: int = 2, *, max_iter: int = 100,
                 tol: float = 1e-4) -> None:
        self.loss = loss
        self.k = 1 if loss == "sigmoid" or n_classes == 2 else n_classes  # logits
        self.max_iter = max_iter
        self.tol = tol
        self._base = HalfBinomialLoss() if self.k == 1 else HalfMultinomialLoss(n_classes=n_classes)
        self.coef_: np.ndarray | None = None
        self.classes_ = np.arange(2 if self.k == 1 else self.k)
        self.n_iter_ = 0

    def fit(self, x: np.ndarray, y: np.ndarray, C: float) -> WarmLBFGS:
        """Fit at `C`, warm-started from the previous fit (zeros the first time)."""
        n, d = x.shape
        x = np.ascontiguousarray(x)
        if self.loss == "softmax":
            y = self._encode(y)
        w0 = np.zeros((self.k, d + 1)) if self.coef_ is None else self.coef_
        # in X's dtype, as scikit-learn passes it: scipy then calls the objective with parameters of that dtype
        res = optimize.minimize(self._objective, w0.ravel(order="F").astype(x.dtype), method="L-BFGS-B", jac=True,
                                args=(x, y.astype(x.dtype), 1.0 / (C * n)),
                                options={"maxiter": self.max_iter, "maxls": _MAXLS, "gtol": self.tol, "ftol": _FTOL})
        # scikit-learn keeps coef_ in X's dtype, and the next warm start begins from that rounded copy
        self.coef_ = res.x.reshape((self.k, d + 1), order="F").astype(x.dtype).astype(np.float64)
        self.n_iter_ = int(res.nit)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """(N, K) logits in the features' dtype."""
        assert self.coef_ is not None, "fit first"
        w = self.coef_.astype(x.dtype)
        return x @ w[:, :-1].T + w[:, -1]

    def predict_proba(self, x: np.ndarray, n_classes: int | None = None) -> np.ndarray:
        """(N, 1) positive-class probability (sigmoid) or class probabilities (softmax), float64.

        Args:
            n_classes: softmax only: return (N, n_classes) with zeros for classes absent from the last fit;
                None returns only the fitted classes' columns.
        """
        raw = self.decision_function(x).astype(np.float64)
        if self.loss == "sigmoid":
            return expit(raw)
        proba = np.concatenate([1 - expit(raw), expit(raw)], axis=1) if self.k == 1 else softmax(raw, axis=1)
        if n_classes is None:
            return proba
        full = np.zeros((len(x), n_classes))
        full[:, self.classes_] = proba
        return full

    def _encode(self, y: np.ndarray) -> np.ndarray:
        """scikit-learn's label encoding: only the classes present get logits, and two classes get one (binomial,
        the second class positive). A different number of logits than the last fit restarts from zeros
        (scikit-learn refuses such a warm start)."""
        self.classes_ = np.unique(y)
        k = 1 if len(self.classes_) == 2 else len(self.classes_)
        if k != self.k:
            self.k, self.coef_ = k, None
            self._base = HalfBinomialLoss() if k == 1 else HalfMultinomialLoss(n_classes=k)
        return np.searchsorted(self.classes_, y)

    def _objective(self, w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
        """``LinearModelLoss.loss_gradient`` of scikit-learn, operation for operation and dtype for dtype (the
        reference's trajectory is chaotic where it stops at the cap: only bit-identical arithmetic follows it),
        minus its array-namespace dispatch and conversions."""
        n, d = x.shape
        if self.k == 1:  # HalfBinomialLoss, one logit
            weights, intercept = w[:-1], w[-1]
            raw = x @ weights + intercept  # (N,)
        else:  # HalfMultinomialLoss; the classes of one feature are contiguous in w
            coef = w.reshape((self.k, -1), order="F")
            weights, intercept = coef[:, :-1], coef[:, -1]
            raw = x @ weights.T + intercept  # (N, K)
        loss, g = self._base.loss_gradient(y_true=y, raw_prediction=raw, sample_weight=None, n_threads=1)
        value = float(np.sum(loss) / n)
        flat = np.ravel(weights, order="K")
        value += float(0.5 * l2 * np.dot(flat, flat))
        g /= n
        if self.k == 1:
            grad = np.empty_like(w, dtype=weights.dtype)
            grad[:d] = x.T @ g + l2 * weights
            grad[-1] = np.sum(g)
            return value, grad
        grad = np.empty((self.k, d + 1), dtype=weights.dtype, order="F")
        grad[:, :d] = g.T @ x + l2 * weights
        grad[:, -1] = np.sum(g, axis=0)
        return value, grad.ravel(order="F")
