"""Minimising -2 log L: exact gradients when the model allows it, pyhf otherwise.

One :class:`Objective` is built per model and reused by the fit, the ranking and every
CLs evaluation, so the model is flattened once. With :class:`.likelihood.FastLikelihood`
the minimiser is L-BFGS-B with the analytic gradient and the covariance comes from the
Hessian of that gradient (central differences); without it, pyhf's scipy optimiser with
numerical gradients (the same numbers, ~100 times slower).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyhf
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from intccms.stats.likelihood import FastLikelihood, compile_model

if TYPE_CHECKING:
    from scipy.optimize._minimize import _MinimizeOptions

log = logging.getLogger(__name__)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """One BLAS thread: the fits multiply matrices of ~100 x 20, where OpenBLAS's thread
    hand-off costs more than the arithmetic (on a busy 2-core node L-BFGS-B's every step
    took 2 ms instead of 20 us)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class MinimizationError(RuntimeError):
    """The minimiser stopped without convergence; ``pars`` is where it stopped."""

    def __init__(self, msg: str, pars: np.ndarray) -> None:
        super().__init__(msg)
        self.pars = pars


class Objective:
    """-2 log L of one model, minimised under bounds with some parameters fixed.

    Args:
        model: the pyhf model.
        maxiter: iteration limit of the minimiser (None: its default).
    """

    def __init__(self, model: pyhf.pdf.Model, maxiter: int | None = None) -> None:
        self.model = model
        self.maxiter = maxiter
        with np.errstate(all="ignore"):
            self.fast: FastLikelihood | None = compile_model(model)
        if self.fast is None:
            log.info("model has modifiers without an analytic likelihood; using pyhf's "
                     "numerical gradients")
        self.bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
        self.fixed = np.asarray(model.config.suggested_fixed(), dtype=bool)
        self.init = np.asarray(model.config.suggested_init(), dtype=float)
        self.n_fits = 0
        self.n_evaluations = 0
        # diagonal preconditioning: parameters in units of their expected uncertainty
        self.scale = np.ones(self.init.size)
        self.prior = np.full(self.init.size, np.inf)
        if self.fast is not None:
            self.prior[self.fast.c_par] = self.fast.c_sigma
            self.scale = self._expected_sigmas()

    def _compiled(self) -> FastLikelihood:
        """The analytic likelihood: the ``*_fast`` paths are taken only when there is one."""
        assert self.fast is not None
        return self.fast

    def _expected_sigmas(self) -> np.ndarray:
        """Uncertainties from the diagonal of the expected (Fisher) information at the
        initial point, capped at the prior widths.

        L-BFGS-B's first step assumes a unit Hessian; in units of the prior widths alone a
        well-measured parameter (the POI of a large sample, a staterror gamma) has a
        gradient of hundreds, the first step crosses the whole box into empty expectations
        and the line search falls back to the start, which L-BFGS-B then reports as
        converged. In these units the Hessian is ~2 on the diagonal and the first step
        stays near the minimum.
        """
        fast, x0 = self._compiled(), self.init
        with np.errstate(all="ignore"):
            nu0 = fast.expected_main(x0)
            info = np.zeros(x0.size)
            for i in range(x0.size):
                h = 1e-5 * max(1.0, abs(x0[i]))
                x = x0.copy()
                x[i] += h
                dnu = (fast.expected_main(x) - nu0) / h
                info[i] = 2.0 * float(np.sum(np.where(nu0 > 0, dnu * dnu / nu0, 0.0)))
            info[fast.c_par] += 2.0 / fast.c_sigma**2
            sig = np.sqrt(2.0 / info)
        sig = np.minimum(sig, self.prior)
        return np.where(np.isfinite(sig) & (sig > 0), sig, 1.0)

    def set_scale(self, sigmas: Any) -> None:
        """Use these uncertainties (e.g. Hesse's, capped at the prior widths) as the
        parameters' units from now on; L-BFGS-B then needs a few times fewer steps."""
        sig = np.minimum(np.asarray(sigmas, dtype=float), self.prior)
        ok = np.isfinite(sig) & (sig > 0)
        self.scale = np.where(ok, sig, self.scale)

    @property
    def backend(self) -> str:
        """``analytic`` (flattened model, exact gradient) or ``pyhf`` (numerical)."""
        return "analytic" if self.fast is not None else "pyhf"

    def twice_nll(self, pars: Any, data: Any) -> float:
        """-2 log L at ``pars``."""
        if self.fast is not None:
            return self.fast.twice_nll(np.asarray(pars, dtype=float), np.asarray(data, dtype=float))
        return float(pyhf.infer.mle.twice_nll(pyhf.tensorlib.astensor(pars),
                                              pyhf.tensorlib.astensor(data), self.model)[0])

    def minimize(
        self, data: Any, init: Any = None, fixed: Mapping[int, float] | None = None,
        bounds: Any = None,
    ) -> tuple[np.ndarray, float]:
        """Best parameters and -2 log L with ``fixed`` (index -> value) held constant.

        Raises:
            MinimizationError: the minimiser did not converge.
        """
        x0 = np.array(self.init if init is None else init, dtype=float)
        bnds = self.bounds if bounds is None else np.asarray(bounds, dtype=float)
        hold = {int(i): float(x0[i]) for i in np.flatnonzero(self.fixed)}
        hold.update({int(k): float(v) for k, v in (fixed or {}).items()})
        for i, v in hold.items():
            x0[i] = v
        self.n_fits += 1
        if self.fast is None:
            return self._minimize_pyhf(data, x0, bnds, hold)
        return self._minimize_fast(np.asarray(data, dtype=float), x0, bnds, hold)

    def _minimize_fast(self, data: np.ndarray, x0: np.ndarray, bnds: np.ndarray,
                       hold: dict[int, float]) -> tuple[np.ndarray, float]:
        fast = self._compiled()
        free = np.array([i not in hold for i in range(x0.size)])
        full = x0.copy()
        if not free.any():
            # nothing to minimise (e.g. the background-only fit of a model whose only
            # parameter is the POI): L-BFGS-B rejects an empty parameter vector
            self.n_evaluations += 1
            return full, float(fast.twice_nll(full, data))
        full[free] = np.clip(x0[free], bnds[free, 0], bnds[free, 1])
        unit = self.scale[free]
        z0 = full[free] / unit
        # minimise relative to the start: L-BFGS-B's ftol is relative to |f|
        offset = fast.twice_nll(full, data)
        if not np.isfinite(offset):
            offset = 0.0

        def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
            full[free] = z * unit
            self.n_evaluations += 1
            val, grad = fast.value_and_grad(full, data)
            return val - offset, grad[free] * unit

        opts: _MinimizeOptions = {"ftol": 1e-13, "gtol": 1e-7, "maxls": 50}
        if self.maxiter is not None:
            opts["maxiter"] = int(self.maxiter)
        z = z0
        for _ in range(6):
            bz = bnds[free] / unit[:, None]
            with np.errstate(all="ignore"):
                res = minimize(fun, z, jac=True, method="L-BFGS-B", bounds=list(map(tuple, bz)),
                               options=opts)
            full[free] = res.x * unit
            # res.success alone is not enough: a line search that falls back to the start
            # point ends in "relative reduction of f <= factr*epsmch" with success=True
            if _converged(res, fun, bz):
                return full.copy(), float(res.fun + offset)
            if "ITERATIONS" in str(res.message).upper():
                break
            # typically a first step deep into an empty-bin wall: restart where it stopped
            # with 10 times smaller units (100 times shorter first steps)
            unit = unit * 0.1
            z = full[free] / unit
        msg = f"L-BFGS-B: {res.message} after {res.nit} iterations"
        raise MinimizationError(msg, full.copy())

    def _minimize_pyhf(self, data: Any, x0: np.ndarray, bnds: np.ndarray,
                       hold: dict[int, float]) -> tuple[np.ndarray, float]:
        opt = pyhf.optimize.scipy_optimizer(maxiter=self.maxiter) if self.maxiter else \
            pyhf.optimize.scipy_optimizer()
        try:
            pars, fval = opt.minimize(
                pyhf.infer.mle.twice_nll, pyhf.tensorlib.astensor(data), self.model,
                x0.tolist(), bnds.tolist(), sorted(hold.items()), return_fitted_val=True,
            )
        except pyhf.exceptions.FailedMinimization as err:
            x = getattr(err.result, "x", None)
            raise MinimizationError(str(err), np.asarray(x if x is not None else x0)) from err
        return np.asarray(pars, dtype=float), float(fval)

    def covariance(self, pars: np.ndarray, data: Any, fixed: Mapping[int, float] | None = None
                   ) -> np.ndarray:
        """Covariance 2 H^-1 of the free parameters (zeros for fixed ones), H the Hessian of
        -2 log L from central differences of the exact gradient."""
        hold = set(np.flatnonzero(self.fixed).tolist()) | set((fixed or {}).keys())
        free = np.array([i not in hold for i in range(len(pars))])
        if self.fast is None:
            msg = "covariance needs the analytic likelihood; use cabinetry.fit.fit for this model"
            raise NotImplementedError(msg)
        h = self._hessian_fast(np.asarray(pars, dtype=float), np.asarray(data, dtype=float), free)
        cov = np.zeros((len(pars), len(pars)))
        idx = np.flatnonzero(free)
        cov[np.ix_(idx, idx)] = 2.0 * np.linalg.pinv(h, hermitian=True)
        return cov

    def _hessian_fast(self, pars: np.ndarray, data: np.ndarray, free: np.ndarray) -> np.ndarray:
        fast = self._compiled()
        idx = np.flatnonzero(free)
        h = np.empty((idx.size, idx.size))
        for row, i in enumerate(idx):
            step = 1e-5 * max(1.0, abs(pars[i]))
            up, dn = pars.copy(), pars.copy()
            up[i] += step
            dn[i] -= step
            gu = fast.value_and_grad(up, data)[1]
            gd = fast.value_and_grad(dn, data)[1]
            h[row] = (gu[idx] - gd[idx]) / (2 * step)
        return 0.5 * (h + h.T)


def _converged(res: Any, fun: Any, bounds: np.ndarray) -> bool:
    """The projected gradient (in the minimiser's units) is small: the point is a minimum
    whatever L-BFGS-B's message says (it sometimes stops on 'ABNORMAL' line searches at the
    minimum itself, and reports success when it never left the start)."""
    if "ITERATIONS" in str(res.message).upper():
        return False
    _, g = fun(res.x)
    g = np.where((res.x <= bounds[:, 0]) & (g > 0), 0.0, g)
    g = np.where((res.x >= bounds[:, 1]) & (g < 0), 0.0, g)
    return bool(np.max(np.abs(g), initial=0.0) < 1e-3)
