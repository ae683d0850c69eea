"""One error type for bad input data, so every command can report it cleanly."""
from pathlib import Path


class DataError(ValueError):
    """Bad input data. The message always names the offending file and the problem."""

    def __init__(self, path, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path is not None else problem)

    def __reduce__(self):  # travels intact from worker processes (the default passes one argument)
        return (type(self), (self.path, self.problem))
