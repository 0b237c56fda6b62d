"""Inference: the Euler flow sampler with batched guidance branches, time-dependent three-branch CFG, the CLI.

Prompt rephrasing, the Python pipeline API and the web demo are issue #10's remaining work.
"""
