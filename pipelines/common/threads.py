"""One BLAS thread per process, for the commands that parallelise over processes.

prepare parallelises over processes; OpenBLAS's own threads (the registration's least squares)
oversubscribe the cores, and on a busy 2-core machine made one pair's registration 1.4 s instead
of 0.2 s. The variables act only before numpy is loaded: a command sets them first thing, and
spawned worker processes get them in their environment
(`pipelines.preparation.prepare.worker_pool`). No imports beyond os here, so this can run before
numpy loads.
"""
import os

ONE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one_blas_thread():
    """Ask for one BLAS thread unless the environment already says otherwise."""
    for k, v in ONE_THREAD_ENV.items():
        os.environ.setdefault(k, v)
