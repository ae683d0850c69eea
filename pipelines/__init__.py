"""Data side of hdc-deblur: reading the HDC2021 data, preprocessing, simulation and training-set
preparation, one subpackage each (docs/development.md: the layout and its import order)."""
