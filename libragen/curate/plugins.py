"""Plug-ins named in the curation YAML as ``'package.module:Class'`` (subject detector, model scorers)."""

from __future__ import annotations

import importlib


def import_target(target: str, what: str = "subject_detector") -> type:
    """The class named by ``'package.module:Class'``; a clear ValueError otherwise."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{what} {target!r}: expected 'package.module:Class'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{what} {target!r} cannot be imported ({err})") from err
