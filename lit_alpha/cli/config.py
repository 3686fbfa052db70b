"""Config files: one shared base, per-method differences, omegaconf interpolation.

* **Composition.** A config file may name the file(s) it builds on with ``__base__: base.yaml`` (or a
  list, applied in order; paths relative to the file itself). The base is loaded first and this file
  is merged over it key by key: mappings merge recursively, anything else (a number, a list such as
  ``trainer.callbacks``) replaces the base's value, and a mapping with a different ``class_path``
  replaces the base's mapping whole (its ``init_args`` belong to the other class). ``configs/base.yaml``
  holds the budget, task, data and trainer settings every method shares; each method config
  (``configs/a05.yaml``) holds only what differs, and one file is still all the command line needs:
  ``python -m lit_alpha fit --config configs/a05.yaml``. (jsonargparse's own nested ``config:`` key
  replaces whole top-level groups, so a method's ``trainer:`` block would drop the base's.)
* **Interpolation.** The parser runs in jsonargparse's ``omegaconf+`` mode: after every file and
  command-line override is merged, ``${data.max_new_tokens}`` anywhere in the config is replaced by
  that field's value (keys as ``--print_config`` shows them, the same under fit, validate, test and
  evaluate). So ``normalizer: ${data.max_new_tokens}`` follows ``--data.max_new_tokens 64`` instead of
  repeating the number. (The plain ``omegaconf`` mode resolves each file on its own, so a method
  config could not refer to a value of its base.)
* **Run name.** The stem of the first ``--config`` given on the command line (not of its base).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import jsonargparse._core as _jsonargparse_core
import yaml
from jsonargparse import Namespace, get_loader, set_loader

PARSER_MODE = "omegaconf+"
BASE_KEY = "__base__"
_MAX_DEPTH = 8


class BaseConfigError(yaml.YAMLError):
    """A ``__base__`` that cannot be read (a missing file, a cycle, not a mapping)."""


def merge(base: Any, override: Any) -> Any:
    """``override`` merged over ``base``: mappings recursively, a new ``class_path`` or any other value
    replaces (lists too)."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    if "class_path" in override and override["class_path"] != base.get("class_path"):
        return override
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if key in base else value
    return out


def _with_bases(value: Any, stack: tuple[str, ...] = ()) -> Any:
    """A loaded config mapping with its ``__base__`` files (relative to the current directory,
    which jsonargparse sets to the config file's own while loading it) merged under it."""
    if not isinstance(value, dict) or BASE_KEY not in value:
        return value
    value = dict(value)
    bases = value.pop(BASE_KEY)
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise BaseConfigError(f"config: {BASE_KEY} must be a file name or a list of them, got {bases!r}")
    merged: Any = {}
    for name in bases:
        path = Path(name).expanduser().resolve()
        if str(path) in stack or len(stack) >= _MAX_DEPTH:
            raise BaseConfigError(f"config: {BASE_KEY} {name!r}: the bases include each other "
                                  f"({' -> '.join(Path(s).name for s in (*stack, str(path)))})")
        try:
            text = path.read_text()
        except OSError as err:
            raise BaseConfigError(f"config: {BASE_KEY} {name!r}: cannot read {str(path)!r} "
                                  f"({err.strerror or err})") from None
        loaded = _yaml_load(text)
        if not isinstance(loaded, dict):
            raise BaseConfigError(f"config: {BASE_KEY} {name!r}: {str(path)!r} is not a mapping of fields")
        cwd = os.getcwd()
        os.chdir(path.parent)  # its own bases are relative to it
        try:
            merged = merge(merged, _with_bases(loaded, (*stack, str(path))))
        finally:
            os.chdir(cwd)
    return merge(merged, value)


_yaml_load = get_loader("yaml")


def _load(text: str) -> Any:
    """The ``omegaconf+`` loader (plain YAML: interpolation runs after merging) with ``__base__``."""
    return _with_bases(_yaml_load(text))


set_loader(PARSER_MODE, _load, exceptions=(yaml.YAMLError,))

if not callable(getattr(_jsonargparse_core, "omegaconf_apply", None)):  # pragma: no cover - a jsonargparse change
    raise ImportError("lit_alpha.cli.config needs jsonargparse's omegaconf_apply (tested with jsonargparse 4.53); "
                      "install the version pinned in pyproject.toml")
_resolve_root = _jsonargparse_core.omegaconf_apply


def _resolve_per_subcommand(parser: Any, cfg: Namespace) -> Namespace:
    """jsonargparse resolves ``omegaconf+`` interpolations against the root namespace, where a fit
    config lives under ``fit.``; resolve a subcommand's config against itself instead, so that
    ``${data.max_new_tokens}`` means the same under ``fit``, ``validate``, ``test`` and ``run=False``."""
    action = getattr(parser, "_subcommands_action", None)
    sub = cfg.get("subcommand") if action is not None else None
    if sub is not None and isinstance(cfg.get(sub), Namespace):
        cfg[sub] = _resolve_root(action._name_parser_map[sub], cfg[sub])
        return cfg
    return _resolve_root(parser, cfg)


_jsonargparse_core.omegaconf_apply = _resolve_per_subcommand


def command_line_configs(args: Sequence[str]) -> list[str]:
    """The ``--config`` files of a command line, in order (``--config X`` and ``--config=X``)."""
    files: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def run_name_from(args: Sequence[str]) -> str | None:
    """The default MLflow run name: the stem of the first ``--config`` file on the command line."""
    files = command_line_configs(args)
    return Path(files[0]).stem if files else None
