"""YAML configs validated by pydantic: one loader so every stage reports bad configs the same way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Base for every config: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=BaseModel)


class ConfigError(ValueError):
    """A config file is missing, not YAML, or does not validate; the message says where."""


def load_config(model: type[ConfigT], path: str | os.PathLike[str] | None, **overrides: object) -> ConfigT:
    """Load ``path`` (YAML mapping; None means all defaults), apply non-None overrides, validate."""
    data: dict[str, object] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML ({err})") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level, got {type(loaded).__name__}")
        data.update(loaded)
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return model.model_validate(data)
    except ValidationError as err:
        where = f"{path}" if path is not None else "config"
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{where}: {problems}") from err


def dump_config(config: BaseModel) -> str:
    """The config as YAML text (what a run records beside its outputs)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
