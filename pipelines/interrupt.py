"""Ctrl-C in commands with worker processes.

A terminal's Ctrl-C sends SIGINT to every process of the command. Worker processes ignore it: the
main process alone stops the work (cancels what has not started, lets running jobs finish their
atomic writes) and prints one summary line, instead of every worker printing a traceback.
Signals ignored here stay ignored in the programs a worker runs (Tesseract).
"""
import signal


def ignore_sigint() -> None:
    """Worker-process initializer: leave Ctrl-C to the main process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
