"""Data side of hdc-deblur: reading the HDC2021 layouts, simulating them, and preprocessing."""
