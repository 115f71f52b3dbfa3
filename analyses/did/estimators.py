"""Two-period (2x2) DiD estimators with their influence functions.

These are numpy transcriptions of R DRDID's ``drdid_panel``, ``std_ipw_did_panel``,
``reg_did_panel`` (balanced panels) and ``drdid_rc``, ``std_ipw_did_rc``,
``reg_did_rc`` (repeated cross sections / unbalanced panels), which R ``did``
calls for every group-time cell.  Each returns ``(att, influence_function)`` with
one influence-function entry per observation of the cell sample.

Formulas follow DRDID 1.x (as ported in the ``drdid``/``csdid`` Python packages):
the propensity logit is fitted by IRLS with R ``glm``'s starting values and stopping
rule (``fit_logit``), scores are capped at ``1 - 1e-6``, comparison units with a score
of at least ``trim_level`` are trimmed and a cell whose largest score reaches 0.999
fails overlap (R ``did``); the logit Hessian is rebuilt from the final fitted scores.
"""
from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve, solve_triangular

TRIM_LEVEL = 0.995
OVERLAP_LIMIT = 0.999  # R did: a cell whose max propensity score reaches this fails overlap


class CellEstimationError(ValueError):
    """A 2x2 cell cannot be estimated (singular design, failed overlap, ...)."""


class PropensityScoreWarning(UserWarning):
    """A cell's propensity logit stopped at R's iteration limit or has scores numerically 0."""


_EPS = np.finfo(float).eps
_GLM_EPSILON, _GLM_MAXIT = 1e-8, 25  # R glm.control()
#: Smallest Cholesky pivot of the column-scaled weighted Gram matrix for which the normal equations
#: are solved directly; below it (condition number above ~1e10) the step falls back to R's QR.
_WELL_CONDITIONED = 1e-5
NUMERICALLY_ZERO = 1e-6  # a comparison unit's score below this: no weight (mirror of DRDID's 1 - 1e-6 cap)


def _logit_inverse(eta: np.ndarray) -> np.ndarray:
    """R's ``binomial()$linkinv``: the odds are clamped to [eps, 1/eps] beyond |eta| > 30."""
    odds = np.exp(np.clip(eta, -30.0, 30.0))
    odds = np.where(eta < -30.0, _EPS, np.where(eta > 30.0, 1.0 / _EPS, odds))
    return odds / (1.0 + odds)


def _logit_mu_eta(eta: np.ndarray) -> np.ndarray:
    """R's ``binomial()$mu.eta``: d mu / d eta, eps beyond |eta| > 30."""
    odds = np.exp(np.clip(eta, -30.0, 30.0))
    return np.where(np.abs(eta) > 30.0, _EPS, odds / (1.0 + odds) ** 2)


def _logit_deviance(treated: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum(-2.0 * weights * np.where(treated == 1, np.log(prob), np.log1p(-prob))))


def fit_logit(treated: np.ndarray, design: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, bool]:
    """Weighted logit fitted as R's ``glm.fit`` does; returns (fitted probabilities, converged).

    IRLS from glm's starting values ``mu = (w y + 1/2) / (w + 1)``, stopping when
    ``|dev - dev_old| / (|dev| + 0.1) < 1e-8`` or after 25 iterations, with R's clamped
    logit link.  Under (near-)separation the maximum likelihood estimate does not exist;
    stopping where glm stops gives R's finite fit, in which separated comparison units
    have scores of (numerically) zero and so no weight.  Collinear covariates (R: NA
    coefficients, which DRDID refuses) raise ``CellEstimationError``.
    """
    if design.shape[1] == 1:  # intercept only: closed form, exactly as R short-cuts it
        return np.full(len(treated), np.sum(weights * treated) / np.sum(weights)), True
    prob = (weights * treated + 0.5) / (weights + 1.0)
    eta = np.log(prob / (1.0 - prob))
    deviance_old = _logit_deviance(treated, prob, weights)
    for _ in range(_GLM_MAXIT):
        mu_eta = _logit_mu_eta(eta)
        working = eta + (treated - prob) / mu_eta
        root_weight = np.sqrt(weights * mu_eta**2 / (prob * (1.0 - prob)))
        weighted = design * root_weight[:, None]
        scale = np.linalg.norm(weighted, axis=0)
        scaled = weighted / np.where(scale > 0, scale, 1.0)
        solution = _least_squares_step(scaled, working * root_weight)
        eta = design @ (solution / scale)
        prob = _logit_inverse(eta)
        deviance = _logit_deviance(treated, prob, weights)
        if abs(deviance - deviance_old) / (abs(deviance) + 0.1) < _GLM_EPSILON:
            return prob, True
        deviance_old = deviance
    return prob, False


def _least_squares_step(scaled: np.ndarray, response: np.ndarray) -> np.ndarray:
    """One IRLS step: least squares of ``response`` on the column-scaled weighted design.

    Well-conditioned designs (nearly all) are solved through the Cholesky factor of the k x k
    Gram matrix, whose triangle equals QR's R up to signs: the same solution, at a fraction of the
    cost of a Householder QR of the n x k matrix. Otherwise R's QR with dqrdc2's rule is used: a
    column whose norm, orthogonalised on the earlier ones, falls below 1e-11 of its own is aliased
    (an NA coefficient in R, which DRDID refuses).
    """
    try:
        factor = cho_factor(scaled.T @ scaled, lower=False, check_finite=False)
        if np.min(np.abs(np.diag(factor[0]))) > _WELL_CONDITIONED:
            return cho_solve(factor, scaled.T @ response, check_finite=False)
    except LinAlgError:
        pass
    q, r = np.linalg.qr(scaled)
    if np.any(np.abs(np.diag(r)) < 1e-11):
        raise CellEstimationError("propensity-score covariates are collinear in this cell")
    return solve_triangular(r, q.T @ response)


def _check_overlap(prob: np.ndarray) -> None:
    if np.max(prob) >= OVERLAP_LIMIT:
        raise CellEstimationError(
            f"overlap condition violated: a propensity score reached {np.max(prob):.6f} "
            f"(>= {OVERLAP_LIMIT}); the covariates (nearly) perfectly separate treated "
            "and comparison units"
        )


def _checked_inverse(matrix: np.ndarray, what: str) -> np.ndarray:
    if matrix.shape[0] == 0 or 1.0 / np.linalg.cond(matrix, 1) < np.finfo(float).eps:
        raise CellEstimationError(f"{what} design matrix is singular")
    return np.linalg.inv(matrix)


def _wls_fit(y: np.ndarray, design: np.ndarray, weights: np.ndarray, mask: np.ndarray, what: str):
    """Weighted least squares on the rows in ``mask``; returns (fitted values, asy. linear rep.)."""
    n = len(y)
    w_mask = weights * mask
    gram = (design * w_mask[:, None]).T @ design
    try:
        inverse_scaled = _checked_inverse(gram / n, what)
    except CellEstimationError as error:
        constant = np.ptp(design[w_mask > 0], axis=0) == 0 if np.any(w_mask > 0) else np.zeros(design.shape[1], bool)
        constant[0] = False  # the intercept
        if not constant.any():
            raise
        raise CellEstimationError(f"{error}: {int(constant.sum())} covariate column(s) do not vary among these "
                                  "units, so their regression cannot include them (R did: NA)") from error
    coef = inverse_scaled @ (design.T @ (w_mask * y)) / n
    fitted = design @ coef
    asy_lin_rep = ((w_mask * (y - fitted))[:, None] * design) @ inverse_scaled
    return fitted, asy_lin_rep


#: Propensity fits by their exact inputs: the same cell sample under another outcome (EU and non-EU
#: destinations, exporting and destinations) refits nothing. Bounded, so memory stays small.
_PSCORE_CACHE: OrderedDict[bytes, tuple] = OrderedDict()
_PSCORE_CACHE_SIZE = 64


def _pscore(treated, design, weights):
    """The propensity score of a cell (``_fit_pscore``), reused when the same treated flags, design and weights
    come again; its warnings are repeated, and the arrays are read-only so no caller can alter a cached one."""
    digest = hashlib.blake2b(digest_size=20)
    for array in (treated, design, weights):
        array = np.ascontiguousarray(array, dtype=float)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    key = digest.digest()
    if key in _PSCORE_CACHE:
        _PSCORE_CACHE.move_to_end(key)
        result, messages = _PSCORE_CACHE[key]
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PropensityScoreWarning)
            result = _fit_pscore(treated, design, weights)
        messages = [w.message for w in caught if issubclass(w.category, PropensityScoreWarning)]
        for w in caught:
            if not issubclass(w.category, PropensityScoreWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        for array in result:
            array.flags.writeable = False
        _PSCORE_CACHE[key] = (result, messages)
        if len(_PSCORE_CACHE) > _PSCORE_CACHE_SIZE:
            _PSCORE_CACHE.popitem(last=False)
    for message in messages:
        warnings.warn(message)
    return result


def _fit_pscore(treated, design, weights):
    prob, converged = fit_logit(treated, design, weights)
    if not converged:
        warnings.warn(PropensityScoreWarning("did not converge"))
    _check_overlap(prob)
    if np.any(prob[treated == 0] < NUMERICALLY_ZERO):
        warnings.warn(PropensityScoreWarning("numerically 0"))
    prob = np.minimum(prob, 1 - 1e-6)
    keep = np.where(treated == 1, True, prob < TRIM_LEVEL)
    information = (design * (weights * prob * (1 - prob))[:, None]).T @ design
    hessian = _checked_inverse(information, "propensity-score") * len(treated)
    asy_lin_rep_ps = ((weights * (treated - prob))[:, None] * design) @ hessian
    return prob, keep.astype(float), asy_lin_rep_ps


def _normalised(weights):
    return weights / np.mean(weights)


def _positive(value: float, what: str) -> float:
    if not value > 0:
        raise CellEstimationError(f"no {what} with positive weight in this cell")
    return value


# --------------------------------------------------------------------------- panel


def drdid_panel(y1, y0, treated, design, weights):
    """Locally efficient doubly robust DiD for panel data (DRDID ``drdid_panel``)."""
    w = _normalised(weights)
    n = len(treated)
    delta_y = y1 - y0
    prob, keep, asy_lin_rep_ps = _pscore(treated, design, w)
    out_delta, asy_lin_rep_wols = _wls_fit(delta_y, design, w, 1.0 - treated, "outcome-regression (comparison units)")
    w_treat = keep * w * treated
    w_cont = keep * w * prob * (1 - treated) / (1 - prob)
    mean_treat = _positive(np.mean(w_treat), "treated units")
    mean_cont = _positive(np.mean(w_cont), "comparison units")
    resid = delta_y - out_delta
    eta_treat = np.mean(w_treat * resid) / mean_treat
    eta_cont = np.mean(w_cont * resid) / mean_cont
    inf_treat = (w_treat * resid - w_treat * eta_treat - asy_lin_rep_wols @ (w_treat @ design / n)) / mean_treat
    m2 = (w_cont * (resid - eta_cont)) @ design / n
    m3 = w_cont @ design / n
    inf_cont = (w_cont * resid - w_cont * eta_cont + asy_lin_rep_ps @ m2 - asy_lin_rep_wols @ m3) / mean_cont
    return eta_treat - eta_cont, inf_treat - inf_cont


def ipw_did_panel(y1, y0, treated, design, weights):
    """Normalised (Hajek) IPW DiD for panel data (DRDID ``std_ipw_did_panel``)."""
    w = _normalised(weights)
    n = len(treated)
    delta_y = y1 - y0
    prob, keep, asy_lin_rep_ps = _pscore(treated, design, w)
    w_treat = keep * w * treated
    w_cont = keep * w * prob * (1 - treated) / (1 - prob)
    mean_treat = _positive(np.mean(w_treat), "treated units")
    mean_cont = _positive(np.mean(w_cont), "comparison units")
    eta_treat = np.mean(w_treat * delta_y) / mean_treat
    eta_cont = np.mean(w_cont * delta_y) / mean_cont
    inf_treat = (w_treat * delta_y - w_treat * eta_treat) / mean_treat
    m2 = (w_cont * (delta_y - eta_cont)) @ design / n
    inf_cont = (w_cont * delta_y - w_cont * eta_cont + asy_lin_rep_ps @ m2) / mean_cont
    return eta_treat - eta_cont, inf_treat - inf_cont


def reg_did_panel(y1, y0, treated, design, weights):
    """Outcome-regression DiD for panel data (DRDID ``reg_did_panel``)."""
    w = _normalised(weights)
    n = len(treated)
    delta_y = y1 - y0
    out_delta, asy_lin_rep = _wls_fit(delta_y, design, w, 1.0 - treated, "outcome-regression (comparison units)")
    w_treat = w * treated
    mean_treat = _positive(np.mean(w_treat), "treated units")
    eta_treat = np.mean(w_treat * delta_y) / mean_treat
    eta_cont = np.mean(w_treat * out_delta) / mean_treat
    inf_treat = (w_treat * delta_y - w_treat * eta_treat) / mean_treat
    inf_cont = (w_treat * out_delta - w_treat * eta_cont + asy_lin_rep @ (w_treat @ design / n)) / mean_treat
    return eta_treat - eta_cont, inf_treat - inf_cont


# ---------------------------------------------------- repeated cross sections / unbalanced


def drdid_rc(y, post, treated, design, weights):
    """Locally efficient DR DiD for repeated cross sections (DRDID ``drdid_rc``)."""
    w = _normalised(weights)
    n = len(y)
    prob, keep, asy_lin_rep_ps = _pscore(treated, design, w)
    pre = 1 - post
    out_cont_pre, alr_cont_pre = _wls_fit(y, design, w, (1 - treated) * pre, "outcome-regression (comparison, pre)")
    out_cont_post, alr_cont_post = _wls_fit(y, design, w, (1 - treated) * post, "outcome-regression (comparison, post)")
    out_treat_pre, alr_treat_pre = _wls_fit(y, design, w, treated * pre, "outcome-regression (treated, pre)")
    out_treat_post, alr_treat_post = _wls_fit(y, design, w, treated * post, "outcome-regression (treated, post)")
    out_cont = post * out_cont_post + pre * out_cont_pre

    odds = prob / (1 - prob)
    w_treat_pre = keep * w * treated * pre
    w_treat_post = keep * w * treated * post
    w_cont_pre = keep * w * odds * (1 - treated) * pre
    w_cont_post = keep * w * odds * (1 - treated) * post
    w_d = keep * w * treated
    w_dt1 = w_treat_post
    w_dt0 = w_treat_pre
    means = {name: _positive(np.mean(arr), name) for name, arr in (
        ("treated units (pre)", w_treat_pre), ("treated units (post)", w_treat_post),
        ("comparison units (pre)", w_cont_pre), ("comparison units (post)", w_cont_post))}
    m_tpre, m_tpost, m_cpre, m_cpost = means.values()
    m_d = np.mean(w_d)

    resid = y - out_cont
    eta_treat_pre = w_treat_pre * resid / m_tpre
    eta_treat_post = w_treat_post * resid / m_tpost
    eta_cont_pre = w_cont_pre * resid / m_cpre
    eta_cont_post = w_cont_post * resid / m_cpost
    or_post = out_treat_post - out_cont_post
    or_pre = out_treat_pre - out_cont_pre
    eta_d_post = w_d * or_post / m_d
    eta_dt1_post = w_dt1 * or_post / m_tpost
    eta_d_pre = w_d * or_pre / m_d
    eta_dt0_pre = w_dt0 * or_pre / m_tpre

    att_treat_pre, att_treat_post = np.mean(eta_treat_pre), np.mean(eta_treat_post)
    att_cont_pre, att_cont_post = np.mean(eta_cont_pre), np.mean(eta_cont_post)
    att_d_post, att_dt1_post = np.mean(eta_d_post), np.mean(eta_dt1_post)
    att_d_pre, att_dt0_pre = np.mean(eta_d_pre), np.mean(eta_dt0_pre)
    att = ((att_treat_post - att_treat_pre) - (att_cont_post - att_cont_pre)
           + (att_d_post - att_dt1_post) - (att_d_pre - att_dt0_pre))

    inf_treat_pre = eta_treat_pre - w_treat_pre * att_treat_pre / m_tpre
    inf_treat_post = eta_treat_post - w_treat_post * att_treat_post / m_tpost
    m1_post = -(w_treat_post * post) @ design / n / m_tpost
    m1_pre = -(w_treat_pre * pre) @ design / n / m_tpre
    inf_treat_or = alr_cont_post @ m1_post - alr_cont_pre @ m1_pre

    inf_cont_pre = eta_cont_pre - w_cont_pre * att_cont_pre / m_cpre
    inf_cont_post = eta_cont_post - w_cont_post * att_cont_post / m_cpost
    m2_pre = (w_cont_pre * (resid - att_cont_pre)) @ design / n / m_cpre
    m2_post = (w_cont_post * (resid - att_cont_post)) @ design / n / m_cpost
    inf_cont_ps = asy_lin_rep_ps @ (m2_post - m2_pre)
    m3_post = -(w_cont_post * post) @ design / n / m_cpost
    m3_pre = -(w_cont_pre * pre) @ design / n / m_cpre
    inf_cont_or = alr_cont_post @ m3_post - alr_cont_pre @ m3_pre

    inf_eff = ((eta_d_post - w_d * att_d_post / m_d) - (eta_dt1_post - w_dt1 * att_dt1_post / m_tpost)
               - ((eta_d_pre - w_d * att_d_pre / m_d) - (eta_dt0_pre - w_dt0 * att_dt0_pre / m_tpre)))
    mom_post = (w_d / m_d - w_dt1 / m_tpost) @ design / n
    mom_pre = (w_d / m_d - w_dt0 / m_tpre) @ design / n
    inf_or = (alr_treat_post - alr_cont_post) @ mom_post - (alr_treat_pre - alr_cont_pre) @ mom_pre

    inf_treat = inf_treat_post - inf_treat_pre + inf_treat_or
    inf_cont = inf_cont_post - inf_cont_pre + inf_cont_ps + inf_cont_or
    return att, inf_treat - inf_cont + inf_eff + inf_or


def ipw_did_rc(y, post, treated, design, weights):
    """Normalised IPW DiD for repeated cross sections (DRDID ``std_ipw_did_rc``)."""
    w = _normalised(weights)
    n = len(y)
    prob, keep, asy_lin_rep_ps = _pscore(treated, design, w)
    pre = 1 - post
    odds = prob / (1 - prob)
    w_treat_pre = keep * w * treated * pre
    w_treat_post = keep * w * treated * post
    w_cont_pre = keep * w * odds * (1 - treated) * pre
    w_cont_post = keep * w * odds * (1 - treated) * post
    m_tpre = _positive(np.mean(w_treat_pre), "treated units (pre)")
    m_tpost = _positive(np.mean(w_treat_post), "treated units (post)")
    m_cpre = _positive(np.mean(w_cont_pre), "comparison units (pre)")
    m_cpost = _positive(np.mean(w_cont_post), "comparison units (post)")
    eta_treat_pre = w_treat_pre * y / m_tpre
    eta_treat_post = w_treat_post * y / m_tpost
    eta_cont_pre = w_cont_pre * y / m_cpre
    eta_cont_post = w_cont_post * y / m_cpost
    att_treat_pre, att_treat_post = np.mean(eta_treat_pre), np.mean(eta_treat_post)
    att_cont_pre, att_cont_post = np.mean(eta_cont_pre), np.mean(eta_cont_post)
    att = (att_treat_post - att_treat_pre) - (att_cont_post - att_cont_pre)

    inf_treat = ((eta_treat_post - w_treat_post * att_treat_post / m_tpost)
                 - (eta_treat_pre - w_treat_pre * att_treat_pre / m_tpre))
    inf_cont = ((eta_cont_post - w_cont_post * att_cont_post / m_cpost)
                - (eta_cont_pre - w_cont_pre * att_cont_pre / m_cpre))
    m2_pre = (w_cont_pre * (y - att_cont_pre)) @ design / n / m_cpre
    m2_post = (w_cont_post * (y - att_cont_post)) @ design / n / m_cpost
    inf_cont = inf_cont + asy_lin_rep_ps @ (m2_post - m2_pre)
    return att, inf_treat - inf_cont


def reg_did_rc(y, post, treated, design, weights):
    """Outcome-regression DiD for repeated cross sections (DRDID ``reg_did_rc``)."""
    w = _normalised(weights)
    n = len(y)
    pre = 1 - post
    out_pre, alr_pre = _wls_fit(y, design, w, (1 - treated) * pre, "outcome-regression (comparison, pre)")
    out_post, alr_post = _wls_fit(y, design, w, (1 - treated) * post, "outcome-regression (comparison, post)")
    w_treat_pre = w * treated * pre
    w_treat_post = w * treated * post
    w_treat = w * treated
    m_tpre = _positive(np.mean(w_treat_pre), "treated units (pre)")
    m_tpost = _positive(np.mean(w_treat_post), "treated units (post)")
    m_t = np.mean(w_treat)
    eta_treat_pre = np.mean(w_treat_pre * y) / m_tpre
    eta_treat_post = np.mean(w_treat_post * y) / m_tpost
    reg_att_cont = w_treat * (out_post - out_pre)
    eta_cont = np.mean(reg_att_cont) / m_t
    att = eta_treat_post - eta_treat_pre - eta_cont

    inf_treat_pre = (w_treat_pre * y - w_treat_pre * eta_treat_pre) / m_tpre
    inf_treat_post = (w_treat_post * y - w_treat_post * eta_treat_post) / m_tpost
    moment = w_treat @ design / n
    inf_control = (reg_att_cont - w_treat * eta_cont + (alr_post - alr_pre) @ moment) / m_t
    return att, inf_treat_post - inf_treat_pre - inf_control


PANEL_ESTIMATORS = {"dr": drdid_panel, "ipw": ipw_did_panel, "reg": reg_did_panel}
RC_ESTIMATORS = {"dr": drdid_rc, "ipw": ipw_did_rc, "reg": reg_did_rc}
