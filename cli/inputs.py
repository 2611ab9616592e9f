"""The one way commands take inputs: ``--input``/``-i`` (several values after one flag, and
repeatable) plus positional patterns, all merged in order into ``inputs``."""
from __future__ import annotations

import functools

import click


class ManyValues(click.Option):
    """An option that takes every following argument up to the next option:
    ``--input a.tif b.tif 'more/*.tif'`` (and may also be repeated)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("multiple", True)
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser, ctx):
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            parser_option = parser._long_opt.get(name) or parser._short_opt.get(name)
            if parser_option is None:
                continue
            original = parser_option.process

            def process(value, state, original=original):
                values = [value]
                while state.rargs and not state.rargs[0].startswith("-"):
                    values.append(state.rargs.pop(0))
                for v in values:
                    original(v, state)

            parser_option.process = process


def input_options(what: str):
    """``--input PATTERN...`` and ``[PATTERN]...`` arguments, merged in order into the command's
    ``inputs`` (a list, at least one). ``what`` says what a pattern may name, for the help."""

    def decorate(func):
        @functools.wraps(func)
        def command(*args, inputs=(), more_inputs=(), **kwargs):
            merged = list(inputs) + list(more_inputs)
            if not merged:
                raise click.UsageError(f"give at least one input ({what}) with --input or as arguments")
            return func(*args, inputs=merged, **kwargs)

        command = click.argument("more_inputs", nargs=-1, metavar="[PATTERN]...")(command)
        return click.option("--input", "-i", "inputs", cls=ManyValues, metavar="PATTERN...",
                            help=f"{what}: paths or quoted glob patterns, several after one --input, "
                                 "repeatable; more may follow as arguments.")(command)

    return decorate
