"""The command `python -m pipelines.prepare` (`hdc-prepare`): build a sharded training set.

The code and its usage are in pipelines/preparation/prepare.py.
"""
import sys

from .common.threads import one_blas_thread

if __name__ == "__main__":  # before numpy loads (pipelines/common/threads.py says why)
    one_blas_thread()

from .preparation.prepare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
