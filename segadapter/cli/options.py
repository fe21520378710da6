"""Parsing `key=value` model options given on the command line (values typed as YAML)."""
from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError


def parse_model_options(items: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"model option {item!r} is not KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"model option {item!r}: cannot parse value ({e})") from None
    return options
