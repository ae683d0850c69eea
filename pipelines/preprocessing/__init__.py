"""Preprocessing for training, inference and evaluation: scaling, registration, tiling."""
