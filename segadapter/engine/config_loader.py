"""Config files: YAML with `_base_` inheritance, `key.sub=value` overrides, shipped config names.

Every leaf value remembers where it was set (file or override), so a validation error can point
at the line of work the user has to fix rather than at the merged result.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import ConfigError
from ..utils.io import write_text_atomic
from .config import Config, config_from_dict

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # shipped with the package
BASE_KEY = "_base_"


def list_configs() -> list[str]:
    """Names of the shipped configs (without `.yaml`), `_base_` fragments excluded."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A path to a YAML file, or the name of a shipped config (`adapt-mit_ade20k`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    close = difflib.get_close_matches(path.stem, list_configs(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; see `segadapter train --list`"
    raise ConfigError(f"{name_or_path}: no such config file nor shipped config{hint}")


def load_config(name_or_path: str | os.PathLike, overrides: Iterable[str] = ()) -> Config:
    """Load, merge `_base_` files, apply overrides, validate. Raises ConfigError."""
    raw, origins = load_raw(resolve_config_path(name_or_path))
    for text in overrides:
        apply_override(raw, origins, text)
    return config_from_dict(raw, origins)


def load_raw(path: Path, _chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The merged (not yet validated) dict of `path` and its bases, with each leaf's origin."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, path))
        raise ConfigError(f"{path}: {BASE_KEY} cycle: {cycle}")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{path}: {BASE_KEY} file {base!r} not found (looked in {path.parent})")
        b_raw, b_origins = load_raw(base_path, (*_chain, path))
        _merge(merged, origins, b_raw, b_origins)
    _merge(merged, origins, data, _leaf_origins(data, str(path)))
    return merged, origins


def apply_override(raw: dict[str, Any], origins: dict[str, str], text: str) -> None:
    """Set `a.b.c=value` in `raw`; the value is parsed as YAML (`lr=1e-4`, `crop=[256,256]`)."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    where = f"override {text!r}"
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{where}: expected key.sub=value")
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: value is not valid YAML ({_first_line(e)})") from None
    *parents, leaf = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {'.'.join(parents[:i + 1])} is not a section")
        node = child
    node[leaf] = value
    for k in [k for k in origins if k == key or k.startswith(key + ".")]:
        del origins[k]
    origins.update(_leaf_origins({key: value}, where))


def save_config(cfg: Config, path: str | os.PathLike, notes: list[str] = ()) -> None:
    """Write the resolved config as YAML (atomically); `load_config(path)` reads it back. `notes`
    go first as comments: what the settings resolved to on this machine (`amp auto -> fp32: ...`),
    for the reader, while the keys stay as set so the file runs the same way elsewhere."""
    header = "".join(f"# {line}\n" for note in notes for line in note.splitlines())
    write_text_atomic(path, header + yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None))


def config_changes(old_path: str | os.PathLike, cfg: Config) -> list[str]:
    """`key: old -> new` for every leaf of `cfg` that differs from the config saved at `old_path`."""
    try:
        old = _flatten(_read_yaml(Path(old_path)))
    except ConfigError:
        return []
    new = _flatten(cfg.to_dict())
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)]


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(e)})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(dst: dict, dst_origins: dict[str, str], src: dict, src_origins: dict[str, str],
           prefix: str = "") -> None:
    """Deep-merge `src` into `dst`: mappings merge key by key, anything else replaces."""
    for k, v in src.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], dst_origins, v, src_origins, key + ".")
            dst_origins[key] = src_origins[key]
            continue
        for old in [o for o in dst_origins if o.startswith(key + ".")]:
            del dst_origins[old]
        dst[k] = v
        dst_origins.update({o: w for o, w in src_origins.items() if o == key or o.startswith(key + ".")})


def _leaf_origins(data: dict, where: str, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        out[key] = where
        if isinstance(v, dict):
            out.update(_leaf_origins(v, where, key + "."))
    return out


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
