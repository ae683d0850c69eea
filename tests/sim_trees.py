"""Small simulated HDC2021 trees shared by several test modules (built once per session)."""
from pipelines.simulate import simulate

STEPS = (0, 5)


def build(root, layout):
    simulate(root, STEPS, samples=1, seed=7, layout=layout, workers=2, progress=False)
    return root
