"""Simulating HDC2021 data: scenes, the full-size simulator, the 1:7 synthetic stream."""
