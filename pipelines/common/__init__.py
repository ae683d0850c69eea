"""Shared utilities: atomic writes, the data error, Ctrl-C and BLAS threads, 8-bit output."""
