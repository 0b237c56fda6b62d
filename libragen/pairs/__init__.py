"""Pairs stage (issue #7): in-pair and cross-pair training samples. Not built yet."""
