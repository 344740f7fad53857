"""Needle-in-a-video tools: seeded needle videos, the needle benchmark and its methods, layer calibration."""
