"""Vectorised four-vector helpers on ``(..., 4)`` arrays ordered ``(px, py, pz, E)``.

Kept to what the generator needs: construction from collider coordinates, the inverse,
Lorentz boosts and isotropic two-body decays (the building block of every decay chain).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["boost", "delta_r", "from_ptetaphim", "mass", "pt", "to_ptetaphim", "two_body_decay"]

F = NDArray[np.float64]


def from_ptetaphim(pt_: F, eta: F, phi: F, m: F) -> F:
    """Build ``(px, py, pz, E)`` from transverse momentum, pseudorapidity, azimuth and mass."""
    px = pt_ * np.cos(phi)
    py = pt_ * np.sin(phi)
    pz = pt_ * np.sinh(eta)
    e = np.sqrt(px * px + py * py + pz * pz + m * m)
    return np.stack([px, py, pz, e], axis=-1)


def pt(p4: F) -> F:
    """Transverse momentum."""
    return np.hypot(p4[..., 0], p4[..., 1])


def mass(p4: F) -> F:
    """Invariant mass (negative mass-squared from rounding is clipped to zero)."""
    m2 = p4[..., 3] ** 2 - (p4[..., 0] ** 2 + p4[..., 1] ** 2 + p4[..., 2] ** 2)
    return np.sqrt(np.maximum(m2, 0.0))


def to_ptetaphim(p4: F) -> tuple[F, F, F, F]:
    """Inverse of :func:`from_ptetaphim`; zero-pT vectors get eta 0."""
    pt_ = pt(p4)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt_ > 0, np.arcsinh(p4[..., 2] / np.where(pt_ > 0, pt_, 1.0)), 0.0)
    phi = np.arctan2(p4[..., 1], p4[..., 0])
    return pt_, eta, phi, mass(p4)


def boost(p4: F, beta: F) -> F:
    """Boost ``p4`` by velocity ``beta`` (shape ``(..., 3)``), |beta| < 1."""
    b2 = np.sum(beta * beta, axis=-1)
    b2 = np.minimum(b2, 1.0 - 1e-12)
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = np.sum(beta * p4[..., :3], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g2 = np.where(b2 > 0, (gamma - 1.0) / np.where(b2 > 0, b2, 1.0), 0.0)
    space = p4[..., :3] + (g2 * bp + gamma * p4[..., 3])[..., None] * beta
    energy = gamma * (p4[..., 3] + bp)
    return np.concatenate([space, energy[..., None]], axis=-1)


def two_body_decay(rng: np.random.Generator, parent: F, m1: F, m2: F) -> tuple[F, F]:
    """Decay ``parent`` isotropically in its rest frame into masses ``m1`` and ``m2``.

    Args:
        rng (numpy.random.Generator): random source.
        parent (ndarray): ``(n, 4)`` parent four-momenta.
        m1 (ndarray): ``(n,)`` first daughter masses.
        m2 (ndarray): ``(n,)`` second daughter masses.

    Returns:
        tuple[ndarray, ndarray]: the two daughters' ``(n, 4)`` lab-frame momenta.
    """
    n = parent.shape[0]
    big_m = np.maximum(mass(parent), m1 + m2 + 1e-6)
    p = np.sqrt(np.maximum((big_m**2 - (m1 + m2) ** 2) * (big_m**2 - (m1 - m2) ** 2), 0.0))
    p = p / (2.0 * big_m)
    cos_t = rng.uniform(-1.0, 1.0, n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    phi = rng.uniform(-np.pi, np.pi, n)
    d = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=-1) * p[:, None]
    e1 = np.sqrt(p**2 + m1**2)
    e2 = np.sqrt(p**2 + m2**2)
    d1 = np.concatenate([d, e1[:, None]], axis=-1)
    d2 = np.concatenate([-d, e2[:, None]], axis=-1)
    beta = parent[:, :3] / parent[:, 3:4]
    return boost(d1, beta), boost(d2, beta)


def delta_r(eta1: F, phi1: F, eta2: F, phi2: F) -> F:
    """Angular distance with the azimuthal difference wrapped into [-pi, pi]."""
    dphi = (phi1 - phi2 + np.pi) % (2.0 * np.pi) - np.pi
    return np.hypot(eta1 - eta2, dphi)
