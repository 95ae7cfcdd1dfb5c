"""The `deepvid` command line: `deepvid demo`, `deepvid compare`.

Each subcommand lives in its own module and exposes ``add_arguments(parser)`` and ``run(args)``;
they are imported only when chosen, so `deepvid --help` stays fast and an optional dependency of
one subcommand never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
_COMMANDS = {
    "demo": ("deepvid_plugin.demo.cli", "find a shortcut in the digits: a clean, a shortcut and a "
                                     "distilled run, every kind (--data digits: one run)"),
    "compare": ("deepvid_plugin.mlflow.compare",
                "write a self-contained page comparing explanations across MLflow runs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepvid", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
