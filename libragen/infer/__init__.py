"""Inference (issue #10): prompt rephrasing, dynamic CFG sampling, CLI, Python API, demo. Not built yet."""
