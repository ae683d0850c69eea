"""Wiener deconvolution at the working scale, shared by the classical baseline (`eval.baselines`)
and the network's optional physics input channel (`physics_channel`, PreprocessConfig.physics).

The physics channel hands the network what a tuned classical method already recovers, so the
network has to improve on Wiener rather than rediscover it: the vignetting-corrected 1:f image x
(background 0, fully dark text at -c, c = `physics.text_contrast(step)`) is mapped to the sharp
scale u = 1 + x / c, deconvolved with the step's disc PSF of the physics table at 1:f (the
simulator's kernel; on real data the table's radii are good to ~10 %), and returned as u' - 1,
clipped to CHANNEL_CLIP: background 0 and black text -1 at every step, whatever its contrast.

"wiener" is one such channel at one balance (0.003); "wiener-multi" is one channel per balance of
PreprocessConfig.physics_balances (default MULTI_BALANCES), the first being the "wiener" channel's
0.003 so that a "wiener" model extends exactly (`deblur.train --init`: new channels' weights 0).
Why several (docs/physics-info.md, `bench.physics_info`): a small balance resolves strokes at
every step (15-19 included) but rings on photos and its whole-image figures fall below the plain
input from step 15 on; a large one (3) shows the text lines and photos best at steps 15-19; no
single balance, fixed or tuned per step, does both. TensorFlow is never imported here.
"""
from __future__ import annotations

import numpy as np

from ..reading import physics as P
from ..reading.psf import disc_kernel

PHYSICS_CHANNELS = ("none", "wiener", "wiener-multi")
# "wiener-multi"'s default balances: the shipped channel's 0.003 first (stroke detail), 0.1 (best
# whole-image figures at step 15, little ringing on photos), 3 (best at steps 16-19 and on photos)
MULTI_BALANCES = (0.003, 0.1, 3.0)
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


def _wiener_many(u, psf, balances) -> list[np.ndarray]:
    """`wiener(u, psf, b)` for each balance b, sharing the padding and the forward transforms (the
    operations of skimage.restoration.wiener, in its order: the same values)."""
    from skimage.restoration import uft
    from skimage.restoration.deconvolution import _supported_float_type

    p, pad = _padded(np.asarray(u, dtype=np.float64), psf)
    float_type = _supported_float_type(p.dtype)
    image = p.astype(float_type, copy=False)
    reg, _ = uft.laplacian(image.ndim, image.shape, is_real=True)
    if not np.iscomplexobj(reg):
        reg = uft.ir2tf(reg, image.shape, is_real=True)
    reg = reg.real.astype(float_type, copy=False)
    trans = uft.ir2tf(np.asarray(psf, dtype=np.float64).real.astype(float_type, copy=False), image.shape,
                      is_real=True)
    spectrum = uft.urfftn(image)
    power, reg_power = np.abs(trans) ** 2, np.abs(reg) ** 2
    out = []
    for b in balances:
        if not b > 0:
            raise ValueError(f"Wiener balance must be > 0, got {b!r}")
        d = uft.uirfftn(np.conj(trans) / (power + float(b) * reg_power) * spectrum, shape=image.shape)
        out.append(d[pad:-pad, pad:-pad].astype(np.float32))
    return out


def physics_channels(corrected, step: int, factor=7, balances=(0.003,)) -> np.ndarray:
    """The physics channel (`physics_channel`) at each balance, stacked: float32 (H, W,
    len(balances)). One balance is exactly `physics_channel` (the "wiener" mode); several share
    the FFTs (the same values to float32 rounding, tested)."""
    if not len(balances):
        raise ValueError("physics_channels needs at least one balance")
    if len(balances) == 1:
        return physics_channel(corrected, step, factor, balances[0])[..., None]
    c = np.float32(P.text_contrast(step))
    u = 1.0 + np.asarray(corrected, dtype=np.float32) / c
    ds = _wiener_many(u, disc_psf(step, factor), [float(b) for b in balances])
    return np.stack([np.clip(d - 1.0, *CHANNEL_CLIP) for d in ds], axis=-1).astype(np.float32)
