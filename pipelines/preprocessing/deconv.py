"""Wiener deconvolution at the working scale, shared by the classical baseline (`eval.baselines`)
and the network's optional physics input channel (`physics_channel`, PreprocessConfig.physics).

The physics channel hands the network what a tuned classical method already recovers, so the
network has to improve on Wiener rather than rediscover it: the vignetting-corrected 1:f image x
(background 0, fully dark text at -c, c = `physics.text_contrast(step)`) is mapped to the sharp
scale u = 1 + x / c, deconvolved with the step's disc PSF of the physics table at 1:f (the
simulator's kernel; on real data the table's radii are good to ~10 %), and returned as u' - 1,
clipped to CHANNEL_CLIP: background 0 and black text -1 at every step, whatever its contrast.
TensorFlow is never imported here.
"""
from __future__ import annotations

import numpy as np

from ..reading import physics as P
from ..reading.psf import disc_kernel

PHYSICS_CHANNELS = ("none", "wiener")
# Noise amplification of a weak regulariser stays bounded. Text lies in [-1, 0]; the upper bound
# keeps a photo's range: regions brighter than a dark border reach ((gW + o) / (gT + o) - 1) / c,
# about 5.8 at step 0.
CHANNEL_CLIP = (-2.0, 6.0)


def disc_psf(step: int, factor=7) -> np.ndarray:
    """The disc model of the step's PSF at 1:`factor` (sum 1), radius from the physics table."""
    return disc_kernel(P.step_physics(step)["radius"] / float(factor))


def _padded(u: np.ndarray, psf: np.ndarray) -> tuple[np.ndarray, int]:
    pad = 2 * (max(psf.shape) // 2) + 2
    mode = "reflect" if pad < min(u.shape) else "edge"
    return np.pad(u, pad, mode=mode), pad


def wiener(u, psf, balance: float) -> np.ndarray:
    """skimage Wiener-Hunt deconvolution (Laplacian regulariser, weight `balance`) of a 2-D image,
    reflection-padded so the circular FFT does not wrap; no clipping. float32."""
    from skimage.restoration import wiener as sk_wiener

    if not balance > 0:
        raise ValueError(f"Wiener balance must be > 0, got {balance!r}")
    p, pad = _padded(np.asarray(u, dtype=np.float64), psf)
    d = sk_wiener(p, np.asarray(psf, dtype=np.float64), float(balance), clip=False)
    return d[pad:-pad, pad:-pad].astype(np.float32)


def physics_channel(corrected, step: int, factor=7, balance: float = 0.003) -> np.ndarray:
    """The Wiener channel of a vignetting-corrected 1:`factor` image (module docstring): float32 of
    the same (H, W), background 0, black text about -1."""
    c = np.float32(P.text_contrast(step))
    u = 1.0 + np.asarray(corrected, dtype=np.float32) / c
    d = wiener(u, disc_psf(step, factor), balance) - 1.0
    return np.clip(d, *CHANNEL_CLIP).astype(np.float32)
