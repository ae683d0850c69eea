"""The step-conditioned deblurring network: model, training and inference.

`import deblur` makes the project's Keras layers known to Keras (deblur.layers registers them), so
that the plain loader works: `import deblur, keras; keras.models.load_model("model.keras")`.
It does so without importing Keras/TensorFlow itself, because data preparation and OCR scoring
import this package (e.g. eval.score reads deblur.infer.DEFAULT_MODEL) and must stay free of
TensorFlow: if Keras is already loaded the layers are registered now; otherwise a one-shot import
hook registers them right after the first `import keras` finishes, i.e. only once Keras is in use.

On a machine without a GPU driver TensorFlow's CUDA probe is no news, yet it logs "Could not find
cuda drivers" while loading and "failed call to cuInit" (as an ERROR) at its first operation: there
the C++ log level is raised to 3 and the native output of the Keras/TensorFlow import is dropped
(Python's own warnings still show). TF_CPP_MIN_LOG_LEVEL=0 or 1 keeps everything.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys

GPU_DRIVER_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version", "/dev/dxg")


def _no_gpu_driver() -> bool:
    return sys.platform.startswith("linux") and not any(os.path.exists(p) for p in GPU_DRIVER_FILES)


def _quiet_cuda_probe() -> bool:
    """Raise TensorFlow's C++ log level to 3 where there is no GPU driver (read when TensorFlow
    loads); whether its native import output is to be dropped too."""
    if not _no_gpu_driver() or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") not in ("", "2", "3"):
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return True


@contextlib.contextmanager
def _native_stderr_dropped(drop: bool):
    """While active, what native code writes to file descriptor 2 goes to /dev/null; Python's
    sys.stderr, if it is that descriptor, writes to a copy of the original one meanwhile."""
    if not drop:
        yield
        return
    try:
        sys.stderr.flush()
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        real = False
    saved = os.dup(2)
    old = sys.stderr
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        if real:
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
        yield
    finally:
        if sys.stderr is not old:
            sys.stderr.close()
            sys.stderr = old
        os.dup2(saved, 2)
        os.close(saved)


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
        with _native_stderr_dropped(_quiet_cuda_probe()):
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
    _quiet_cuda_probe()
    if "keras" in sys.modules:
        _register_layers()
    elif not any(isinstance(f, _KerasImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasImportHook())


_install()
