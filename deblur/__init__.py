"""The step-conditioned deblurring network: model, training and inference.

`import deblur` makes the project's Keras layers known to Keras (deblur.layers registers them), so
that the plain loader works: `import deblur, keras; keras.models.load_model("model.keras")`.
It does so without importing Keras/TensorFlow itself, because data preparation and OCR scoring
import this package (e.g. eval.score reads deblur.infer.DEFAULT_MODEL) and must stay free of
TensorFlow: if Keras is already loaded the layers are registered now; otherwise a one-shot import
hook registers them right after the first `import keras` finishes, i.e. only once Keras is in use.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys


def _register_layers():
    from . import layers  # noqa: F401  (the @register_keras_serializable decorators run here)


class _AfterKerasLoader(importlib.abc.Loader):
    """Keras' own loader, then the registration of our layers."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def __getattr__(self, name):  # anything else (get_resource_reader, is_package, ...): Keras' loader
        return getattr(self.loader, name)

    def exec_module(self, module):
        module.__loader__ = self.loader  # Keras sees its own loader, as without the hook
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _remove_hook()
        _register_layers()


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: asked for `keras`, returns the spec the other finders give, with the
    loader wrapped. (It stays until Keras is actually loaded: TensorFlow only looks keras up with
    importlib.util.find_spec at import and loads it later.)"""

    _busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        if spec is not None and spec.loader is not None and not isinstance(spec.loader, _AfterKerasLoader):
            spec.loader = _AfterKerasLoader(spec.loader)
        return spec


def _remove_hook():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _KerasImportHook)]


def _install():
    if "keras" in sys.modules:
        _register_layers()
    elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


_install()
