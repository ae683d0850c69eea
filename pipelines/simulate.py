"""The command `python -m pipelines.simulate` (`hdc-simulate`): a faithful HDC2021 simulator.

The code and its usage are in pipelines/simulation/simulate.py.
"""
import sys

from .simulation.simulate import main

if __name__ == "__main__":
    sys.exit(main())
