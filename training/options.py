"""Command-line options made from a config dataclass: one option per field, named after it (``batch_size`` →
``--batch-size``), with the field's type and default, and the help text (and any other ``argparse`` keyword) kept in
the field's metadata by ``option``. So a default is written once, in the dataclass.

    @dataclass
    class Config:
        work: Path = option(help="folder for resumable training state")      # no default: a required option
        steps: int = option(1000, help="training steps")
        beta_range: tuple[float, float] = option((0.05, 5.0), help="...")   # --beta-range LO HI
        cuda_graph: bool = option(True, help="...", flag="--no-cuda-graph")  # a flag; True by default

    add_options(parser, Config)
    cfg = config_from(Config, parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def option(default=dataclasses.MISSING, *, help: str, **argparse_kwargs):
    """A dataclass field that ``add_options`` turns into an option saying ``help``. ``argparse_kwargs``: any
    ``add_argument`` keyword (``choices``, ``nargs``, ``metavar``), and ``flag``, the option's name where it is not
    the field's (e.g. ``--no-cuda-graph`` for a field that is True by default)."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_kwargs})


def _unwrap_optional(kind):
    """``X | None`` → ``X``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def add_options(parser: argparse.ArgumentParser, cls) -> None:
    """One option per field of the dataclass ``cls``: a field without a default is a required option; a ``bool``
    field is a flag that sets the opposite of its default; ``tuple[T, T]`` takes two values, ``tuple[T, ...]`` one
    or more. The help text ends with the default, where there is one."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = dict(f.metadata)
        help_text = meta.pop("help", None)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = _unwrap_optional(hints[f.name])
        if kind is bool:
            prefix = "--no-" if default else "--"
            flag = meta.pop("flag", prefix + f.name.replace("_", "-"))
            action = "store_false" if default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=help_text, **meta)
            continue
        flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
        kwargs: dict = {"type": kind}
        if typing.get_origin(kind) is tuple:
            args = typing.get_args(kind)
            kwargs = {"type": args[0], "nargs": "+" if args[-1] is Ellipsis else len(args)}
        kwargs.update({"required": True} if required else {"default": default})
        kwargs.update(meta)
        if default is not None and default != () and help_text is not None:
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            help_text = f"{help_text} (default: {shown})"
        parser.add_argument(flag, dest=f.name, help=help_text, **kwargs)


def config_from(cls, args: argparse.Namespace):
    """The dataclass ``cls`` from parsed options named like its fields (lists become tuples)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
