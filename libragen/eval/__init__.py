"""Evaluation (issue #3): motion, quality, text alignment, subject consistency, copy-paste, GSB. Not built yet."""
