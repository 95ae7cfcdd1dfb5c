"""`deepvid demo`: the whole story on a fresh machine, with nothing to download.

By default (``--data marked-digits``, on scikit-learn's bundled digits, the embedded default data
set `make demo` runs on) it tells a debugging story: a clean run, a run whose training set has a
shortcut (a coloured corner marker that gives the digit away), and the clean model distilled into a
small student with Exp-KD, all tracking the same test digits and explained with every kind, logged
to TensorBoard (``OUT/runs``) and MLflow (``OUT/mlflow.db``); it then prints what each view shows
and where to look, and serves TensorBoard on 127.0.0.1:6006 (``--no-serve``: everything but the
server, for CI). See :mod:`deepvid_plugin.demo.shortcut`, :mod:`deepvid_plugin.demo.stories` and
docs/demo.md. ``--data shapes`` tells the same story on rendered shapes (slower, weaker).

``--data digits`` is the single-run demo: a small CNN on the digits, a dozen tracked test digits
(some of them hard or misclassified) explained with DeepVID at every epoch, a fidelity table, the
randomization sanity check and ``OUT/deepvid-demo.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

DEFAULT_PORT = 6006
# --data digits defaults (flags left unset take these; the stories take their own sizes,
# demo_shortcut.SIZES)
DIGITS_DEFAULTS = {"epochs": 15, "instances": 12, "neighbours": 512, "vae_epochs": 20}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=".", help="where runs/, mlflow.db and the PNG go "
                        "(default: the current directory)")
    parser.add_argument("--data", choices=("marked-digits", "digits", "shapes"),
                        default="marked-digits",
                        help="marked-digits (default): find a shortcut in scikit-learn's digits, a "
                        "clean, a shortcut and a distilled run, every kind (docs/demo.md); digits: "
                        "one DeepVID run on the digits; shapes: the shortcut story on rendered "
                        "shapes (slower)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny demo (tests, CI): few images, epochs and neighbours")
    parser.add_argument("--epochs", type=_positive, default=None,
                        help="training epochs (marked-digits 10, digits 15, shapes 12)")
    parser.add_argument("--instances", type=_positive, default=None,
                        help="tracked test instances (marked-digits 8, digits 12 with a third of "
                        "them hard ones, shapes 8)")
    parser.add_argument("--neighbours", type=_at_least_10, default=None,
                        help="DeepVID neighbours per instance (marked-digits and digits 512, "
                        "shapes 256)")
    parser.add_argument("--vae-epochs", type=_positive, default=None,
                        help="epochs to fit the neighbour-generating VAE (marked-digits and digits "
                        "20, shapes 6)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--no-serve", action="store_true",
                        help="do not start TensorBoard at the end (CI, scripts)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TensorBoard port on 127.0.0.1 ({DEFAULT_PORT}; a free one if taken)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _at_least_10(text: str) -> int:
    value = int(text)
    if value < 10:
        raise argparse.ArgumentTypeError(f"expected an integer >= 10, got {text}")
    return value


# ---- the run ----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    if args.data != "digits":
        from deepvid_plugin.demo import shortcut as demo_shortcut

        base = demo_shortcut.SIZES[args.data]["quick" if args.quick else "full"]
        given = {k: getattr(args, k) for k in DIGITS_DEFAULTS if getattr(args, k) is not None}
        return demo_shortcut.run(args, dataclasses.replace(base, **given))
    for name, value in DIGITS_DEFAULTS.items():
        if getattr(args, name) is None:
            small = {"epochs": 3, "instances": 4, "neighbours": 64, "vae_epochs": 2}
            setattr(args, name, small[name] if args.quick else value)
    from deepvid_plugin.demo.single import run_digits

    return run_digits(args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="deepvid demo")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
