"""Shared building blocks used by every stage: video I/O, atomic files, YAML configs."""
