"""Curation stage (issue #5): automatic filters over a raw video pool on Ray Data. Not built yet."""
