"""Ctrl-C in commands with worker processes.

A terminal's Ctrl-C sends SIGINT to every process of the command. Worker processes ignore it: the
main process alone stops the work (cancels what has not started, lets running jobs finish their
atomic writes) and prints one summary line, instead of every worker printing a traceback.
Workers are started inside `sigint_ignored()`, so they ignore it from their first instruction (a
spawned worker spends a second importing before its initializer runs); `ignore_sigint` as the
pool's initializer keeps it so. Signals ignored stay ignored in the programs a worker runs
(Tesseract).
"""
import contextlib
import signal
import threading


def ignore_sigint() -> None:
    """Worker-process initializer: leave Ctrl-C to the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def sigint_ignored():
    """Ignore Ctrl-C for the block (where worker processes are started: they inherit it); a Ctrl-C
    in the block itself is lost, so keep it to the submitting of jobs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
