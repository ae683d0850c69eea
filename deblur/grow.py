"""Widen a trained pyramid model's levels without changing what it computes (Net2Net-style).

    python -m deblur.grow --init deblur/models/default.keras --pyramid-dims 16,24,32,96 --out W.keras

The wider model keeps every trained weight in place. The new channels get fresh weights, except
the paths from a new channel into an old one, which start at zero: the widened model's output is
the old model's output (to float rounding) until training moves those zeros, so a fine-tune starts
from the trained model's quality and spends its budget on the added capacity. Writes W.keras and
its card W.json (the old card with the new architecture), so `deblur.train --init W.keras` builds
the wide model and takes the old preprocessing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from pipelines.common.errors import DataError


def _index_map(layer_name: str, old: int, new: int, level_dims: tuple[tuple[int, int], ...]):
    """Where the `old` entries of a widened axis go among `new` (a list of new indices).

    A merge conv reads [up-sampled, skip] concatenated: two blocks of the level's width, each
    widened on its own; every other axis keeps its old entries first."""
    m = re.fullmatch(r"merge(\d+)_conv", layer_name)
    if m:
        a, b = level_dims[int(m.group(1))]
        if (old, new) == (2 * a, 2 * b):
            return list(range(a)) + list(range(b, b + a))
    return list(range(old))


def _widen_weight(name: str, old, fresh, level_dims, out_axis: int | None):
    """`fresh` (the wide layer's initial weight) with `old` placed at its old indices; entries that
    carry a NEW input channel into an OLD output channel are zeroed (`out_axis`: the output-channel
    axis of a kernel whose second-to-last axis is its input, else None)."""
    import numpy as np

    if old.shape == fresh.shape:
        return old
    if old.ndim != fresh.ndim:
        raise ValueError(f"{name}: weight of rank {old.ndim} cannot become rank {fresh.ndim}")
    maps = [_index_map(name, o, n, level_dims) for o, n in zip(old.shape, fresh.shape)]
    w = fresh.copy()
    w[np.ix_(*maps)] = old
    if out_axis is not None and old.shape[-2] != fresh.shape[-2]:
        new_in = np.setdiff1d(np.arange(fresh.shape[-2]), maps[-2])
        idx = [slice(None)] * w.ndim
        idx[-2], idx[out_axis] = new_in[:, None], np.asarray(maps[out_axis])[None, :]
        w[tuple(idx)] = 0
    return w


def widen(model, pyramid_dims, seed: int | None = 0):
    """A new pyramid model like `model` with channels `pyramid_dims` per level (each >= the old
    one), computing what `model` computes; the new channels' fresh weights are drawn from `seed`
    (None: unseeded). ValueError if the model is not a pyramid or a level would shrink."""
    import keras

    from .model import build_from_spec, spec_of

    spec = spec_of(model)
    dims = tuple(int(d) for d in pyramid_dims)
    if spec.arch != "pyramid":
        raise ValueError(f"only pyramid models can be widened, this one is {spec.arch!r}")
    if len(dims) != len(spec.pyramid_dims):
        raise ValueError(f"the model has {len(spec.pyramid_dims)} levels, got {len(dims)} widths")
    if any(n < o for o, n in zip(spec.pyramid_dims, dims)):
        raise ValueError(f"widths may only grow: {spec.pyramid_dims} -> {dims}")
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    wide = build_from_spec(dataclasses.replace(spec, pyramid_dims=dims), name=model.name)
    level_dims = tuple(zip(spec.pyramid_dims, dims))
    old_layers = {layer.name: layer for layer in model.layers}
    for layer in wide.layers:
        src = old_layers.get(layer.name)
        if src is None or not layer.weights:
            continue
        out_axis = -1 if type(layer).__name__ in ("Conv2D", "HighwayRefinement") else None
        new = []
        for wo, wf in zip(src.weights, layer.weights):
            is_kernel = out_axis is not None and len(wf.shape) == 4
            new.append(_widen_weight(layer.name, wo.numpy(), wf.numpy(), level_dims,
                                     out_axis if is_kernel else None))
        layer.set_weights(new)
    return wide


def main(argv=None) -> int:
    from pipelines.common.atomic import atomic_path

    from .infer import model_preprocess, read_card, trained_steps
    from .model import load_model, save_model, spec_of

    p = argparse.ArgumentParser(prog="python -m deblur.grow", description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True, help="the trained pyramid model (.keras, card beside it)")
    p.add_argument("--pyramid-dims", required=True, help="new channels per level, comma-separated")
    p.add_argument("--out", required=True, help="the widened model (.keras); its card goes beside it")
    p.add_argument("--seed", type=int, default=0, help="seed of the new channels' initial weights (default 0)")
    args = p.parse_args(argv)
    try:
        dims = [int(v) for v in args.pyramid_dims.split(",")]
        model = load_model(args.init)
        wide = widen(model, dims, seed=args.seed)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    card = read_card(Path(args.init))  # a run's checkpoint has none: its run's config.json says
    try:  # the card before the model: a bad record leaves no model without its card
        card = {"preprocess": model_preprocess(args.init, card).to_dict(), "steps": trained_steps(card, args.init),
                "model": spec_of(wide).summary(), "model_file": out.name,
                "command": f"python -m deblur.grow --init {args.init} --pyramid-dims {args.pyramid_dims} --seed {args.seed}"}
    except (TypeError, ValueError) as e:
        print(f"error: {getattr(e, 'source', args.init)}: bad \"preprocess\" settings: {e}", file=sys.stderr)
        return 2
    save_model(wide, out)
    with atomic_path(out.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=2, sort_keys=True))
    print(f"widened {spec_of(model).pyramid_dims} -> {tuple(dims)}: {wide.count_params():,} parameters "
          f"(was {model.count_params():,}); wrote {out} and its card")
    return 0


if __name__ == "__main__":
    sys.exit(main())
