"""Every command of ``python -m lit_alpha <command>``, and the conventions they share.

``fit``, ``validate`` and ``test`` are LightningCLI subcommands (:mod:`lit_alpha.cli.lightning`); the
others are dispatched here to their entry point in this package (``evaluate``: :mod:`lit_alpha.cli.evaluate`,
``export``: :mod:`lit_alpha.cli.export`, the rest: :mod:`lit_alpha.cli.tools`), each a thin parser
over a typed library function.

Each of those commands is a typed function whose docstring documents its arguments
(:func:`parse_command` builds a jsonargparse parser from it): ``--help`` lists them, ``--config FILE``
reads them from YAML and ``--print_config`` prints them (``evaluate`` and ``export``: ``--config`` is
the run's config and ``--print_config`` prints the resolved run config). The argparse-style spellings
keep working: ``--split val train`` (several values after a list flag), ``--dry_run`` (a bool flag
alone means true), the positional configs of ``sweep``. Bad input ends in one line
``error: <field>: ...`` on stderr and exit code 2 everywhere.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import json
import os
import re
import sys
import types
import typing
from typing import Any, Callable, Sequence

LIGHTNING = {
    "fit": "train a policy (evaluates the start policy first, writes checkpoints and the HF model/)",
    "validate": "pass@k of a checkpoint (or of the base model) on the validation split",
    "test": "pass@k of a checkpoint (or of the base model) on the test split",
}
OTHERS = {  # command: ("module:entry point" in this package, summary)
    "evaluate": ("lit_alpha.cli.evaluate:main", "many samples per problem: per-problem tables, pass@k up to n, diversity"),
    "sweep": ("lit_alpha.cli.tools:sweep_main", "configs x seeds into one MLflow experiment, each run evaluated"),
    "frontier": ("lit_alpha.cli.tools:frontier_main", "the precision-coverage frontier of an experiment: PNGs, tables, tests"),
    "export": ("lit_alpha.cli.export:main", "a checkpoint's policy in Hugging Face format (LoRA: merged or adapters)"),
    "pretrain": ("lit_alpha.cli.tools:pretrain_main", "rebuild an embedded base model from scratch (pretrain BENCHMARK --help)"),
    "convert": ("lit_alpha.cli.tools:convert_main", "a GGUF file (SmolLM2-135M-Instruct) to a Hugging Face model directory"),
}


#: config fields that were moved, and where to: a parse error naming one says so
MOVED = {
    "data.base_samples": "the mixture proposal is the objective lit_alpha.objectives.MixtureAlphaDPG "
                         "(model.objective.class_path) with init_args.base_samples K; see configs/a0_mix.yaml",
}


def with_moved_hint(message: str) -> str:
    """``message`` with a pointer to the new place of a moved field (:data:`MOVED`) it names, if any."""
    for key, where in MOVED.items():
        group, name = key.rsplit(".", 1)
        if f"--{key}" in message or f"Group '{group}' does not accept option '{name}'" in message:
            return f"{message} ({key} was moved: {where})"
    return message


def one_line(message: str) -> str:
    """jsonargparse's nested error (``Parser key "model.objective":`` / ``Problem with given class_path
    ...:`` / ``Parser key "alpha":`` / ``Expected ...``) as one line naming the full field:
    ``model.objective.init_args.alpha: Expected ...``."""
    keys: list[str] = []
    for match in re.finditer(r'Parser key "([^"]+)"|Problem with given class_path', message):
        if match.group(1) is not None:
            keys.append(match.group(1))
        elif keys:
            keys.append("init_args")
    if keys and keys[-1] == "init_args":
        keys.pop()
    rest = re.sub(r'Parser key "[^"]+":|Problem with given class_path \'[^\']*\':', " ", message)
    rest = " ".join(rest.split())
    rest = re.sub(r"Does not validate against any of the Union subtypes Subtypes: \[.*?\] Errors: - (.*?)"
                  r" - Expected a <class 'NoneType'>.*$", r"\1", rest)  # X | None: X's error
    required = re.fullmatch(r'Key "([^"]+)" is required but not included in config object or its value is None\.?', rest)
    if required is not None:
        keys, rest = [*keys, required.group(1)], "required, not given"
    missing = re.fullmatch(r"the following arguments are required: -*([\w.]+).*", rest)
    if missing is not None and not keys:
        keys, rest = [missing.group(1)], "required, not given"
    return f"{'.'.join(keys)}: {rest}" if keys else rest


class OneLineErrors:
    """A jsonargparse parser mixin: a parse error is two lines (``error: <field>: ...``, where to find
    help) and exit code 2, not a usage wall. ``JSONARGPARSE_DEBUG=1`` keeps jsonargparse's own."""

    def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
        if not self.exit_on_error or os.environ.get("JSONARGPARSE_DEBUG"):  # type: ignore[attr-defined]
            return super().error(message, ex)  # type: ignore[misc]
        parser = getattr(ex, "subcommand_parser", None) or self
        sys.stderr.write(f"error: {with_moved_hint(one_line(message))}\n")
        prog = parser.prog.replace(" [options]", "").replace("__main__.py", "python -m lit_alpha")
        sys.stderr.write(f"(all fields: {prog} --help)\n")
        self.exit(2)  # type: ignore[attr-defined]


def _command_parser_class():
    from jsonargparse import ArgumentParser

    class CommandParser(OneLineErrors, ArgumentParser):
        """jsonargparse's parser with the CLI's one-line errors."""

    return CommandParser


_BOOL_WORDS = {"true", "false", "yes", "no", "1", "0", "on", "off"}  # what a bool flag accepts


def _kind(annotation: Any) -> str:
    """``list``, ``bool`` or ``value``: how many command-line tokens a field takes."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        return "bool"
    if typing.get_origin(annotation) in (list, tuple, collections.abc.Sequence):
        return "list"
    return "value"


def _is_flag(token: str) -> bool:
    return token.startswith("-") and not re.fullmatch(r"-\d+(\.\d*)?(e-?\d+)?", token)


def _normalize(argv: Sequence[str], kinds: dict[str, str], positional: str | None,
               append: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """argparse-style tokens → jsonargparse's: ``--split val train`` → ``--split ["val", "train"]``, a bool
    flag alone → ``--flag true``, bare tokens → the ``positional`` list field. Returns (tokens for the
    parser, unknown ``--flag [values]`` tokens in order)."""
    out: list[str] = []
    unknown: list[str] = []
    bare: list[str] = []
    appended: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        token = str(argv[i])
        i += 1
        if not _is_flag(token):
            bare.append(token)
            continue
        name = token[2:].split("=", 1)[0] if token.startswith("--") else None
        values: list[str] = []
        if "=" not in token:
            while i < len(argv) and not _is_flag(str(argv[i])):
                values.append(str(argv[i]))
                i += 1
        kind = kinds.get(name or "", None) if token not in ("-h", "--help") else "help"
        if kind is None:  # not a field of the command: a run config override, or an error for the parser
            (unknown if token.startswith("--") else out).extend([token, *values])
            continue
        if kind == "help" or "=" in token:
            out.append(token)
            bare += values
        elif kind == "list" and name in append:
            appended.setdefault(token, []).extend(values)
        elif kind == "list":
            out += [token, values[0] if len(values) == 1 and values[0].startswith("[") else json.dumps(values)]
        elif kind == "bool":
            take = bool(values) and (values[0].lower() in _BOOL_WORDS or positional is None)
            value = values[0] if take else "true"
            out += [token, {"1": "true", "0": "false", "on": "true", "off": "false"}.get(value.lower(), value)]
            bare += values[1:] if take else values
        elif kind == "flag":  # --print_config[=flags] and the like: no separate value
            out.append(token)
            bare += values
        else:
            out += [token, *values[:1]] if values else [token]
            bare += values[1:]
    for token, values in appended.items():
        out += [token, json.dumps(values)]
    if bare and positional is not None:
        out += [f"--{positional}", json.dumps(bare)]
    elif bare:
        out += bare  # the parser names them as unrecognised
    return out, unknown


def parse_command(fn: Callable[..., Any], argv: Sequence[str] | None, prog: str, *, positional: str | None = None,
                  run_config: bool = False, append: Sequence[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """Parse ``argv`` into the keyword arguments of the typed function ``fn`` (its docstring's ``Args:``
    are the ``--help``). ``positional``: the list field that takes bare tokens (``sweep``'s configs);
    ``append``: list fields whose repeated flags add up (``--config A --config B``).
    ``run_config``: ``--config`` is a field of ``fn`` (the run's config files) and unknown ``--x.y v``
    tokens are returned as run config overrides (``fn``'s ``overrides`` parameter, not a flag);
    ``--print_config`` then sets ``kwargs["print_config"]``.
    Otherwise ``--config FILE`` reads the arguments from YAML and ``--print_config`` prints them.
    Bad input exits with one line ``error: <field>: ...`` and code 2."""
    from jsonargparse import ActionConfigFile

    argv = list(sys.argv[1:] if argv is None else argv)
    doc = inspect.getdoc(fn) or ""
    description = doc.split("\n\n")[0]
    print_config = False
    if run_config:  # jsonargparse keeps --print_config to itself: handled here
        print_config = "--print_config" in argv
        argv = [a for a in argv if a != "--print_config"]
        description += ("\n\nOther arguments (--model.*, --data.*, --trainer.*) override the run's config; "
                        "--print_config prints the resolved run config and exits.")
    parser = _command_parser_class()(prog=prog, description=description, exit_on_error=True)
    hints = typing.get_type_hints(fn)
    fields = [name for name in inspect.signature(fn).parameters if not (run_config and name == "overrides")]
    kinds = {name: _kind(hints.get(name, str)) for name in fields}
    if not run_config:
        parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these arguments")
        kinds["config"], kinds["print_config"] = "value", "flag"
    parser.add_function_arguments(fn, fail_untyped=True, skip={"overrides"} if run_config else None)
    tokens, unknown = _normalize(argv, kinds, positional, append)
    if unknown and not run_config:
        tokens += unknown
        unknown = []
    namespace = parser.parse_args(tokens)
    kwargs = {name: namespace.get(name) for name in fields}
    if run_config:
        kwargs["print_config"] = print_config
    return kwargs, unknown


def overview() -> str:
    """``python -m lit_alpha --help``: the commands, one line each."""
    width = max(map(len, [*LIGHTNING, *OTHERS]))
    lines = ["usage: python -m lit_alpha <command> [--config FILE] [options]   (<command> --help: its options)",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in LIGHTNING.items()]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in OTHERS.items()]
    return "\n".join(lines) + "\n"


def command_main(name: str) -> Callable[[Sequence[str] | None], int | None]:
    """The ``main(argv)`` of a non-Lightning command (imported on demand: a command's dependencies load
    only when it runs)."""
    module, _, attr = OTHERS[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)
