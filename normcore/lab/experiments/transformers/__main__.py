"""The Transformers page's experiments from a shell, with the page's controls as options:

    python -m normcore.lab.experiments.transformers init  [--depth 12 --init xavier --seeds 3 ...]
    python -m normcore.lab.experiments.transformers depth [--depth 24 --seeds 3 ...]
    python -m normcore.lab.experiments.transformers warmup [--lr 0.005 --steps 100 ...]
    python -m normcore.lab.experiments.transformers sweep [--rates 0.001,0.01,0.1 --qk-norm rms --z-loss true ...]

Every option is a field of the page's schema (``options.py``), checked as the page checks it,
with the same caps; ``--batch-size`` and ``--eps`` stand for the shared sidebar's.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from normcore.lab.fields import Schema

from normcore.lab.experiments.transformers.part2_options import STABILITY_FIELDS, StabilityOptions, stability_problems
from normcore.lab.experiments.transformers.options import INIT_FIELDS, WARMUP_FIELDS, InitOptions, WarmupOptions, init_problems, warmup_problems


def _value_of(f):
    """argparse's type for field ``f``: the URL form's parser, its message kept."""
    def parse(text: str):
        try:
            return f.from_text(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _add_schema(parser: argparse.ArgumentParser, schema: Schema, eps: bool = True) -> None:
    for f in schema.fields:
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_value_of(f), default=None,
                            help=f"{f.help} (default {f.label_of(f.default)})")
    parser.add_argument("--batch-size", dest="batch_size", type=int, default=None, help="Sequences per batch (default 32).")
    if eps:
        parser.add_argument("--eps", type=float, default=None, help="Every norm's eps (default: each norm's torch default).")


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m normcore.lab.experiments.transformers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, schema, what in (("init", INIT_FIELDS, "per-block gradients at initialization, 3 placements"),
                               ("depth", INIT_FIELDS, "post / pre against depth, both inits"),
                               ("warmup", WARMUP_FIELDS, "post- and pre-LN with and without warm-up")):
        _add_schema(commands.add_parser(name, help=what), schema)
    _add_schema(commands.add_parser("sweep", help="learning-rate sweep, QK-norm off and on (Wortsman et al.)"),
                STABILITY_FIELDS, eps=False)
    return parser.parse_args(argv)


def _options(cls, args: argparse.Namespace):
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k != "command" and v is not None}
    return cls(**given)


def _print_progress(comparison) -> None:
    print(f"\r{comparison.progress_text()}", end="", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    args = parse(argv)
    pd.set_option("display.width", 160)
    if args.command == "sweep":
        return _sweep(_options(StabilityOptions, args))
    if args.command == "warmup":
        options = _options(WarmupOptions, args)
        problems = warmup_problems(options)
    else:
        options = _options(InitOptions, args)
        problems = init_problems(options, sweep=args.command == "depth")
    if errors := [p.message for p in problems if p.level == "error"]:
        print("\n".join(errors), file=sys.stderr)
        return 2
    from normcore.lab.experiments.transformers import at_init, warmup

    if args.command == "init":
        result = at_init.block_gradients(options)
        print(result.blocks.pivot(index="block", columns="placement_label", values="ffn_grad_norm").round(4))
    elif args.command == "depth":
        result = at_init.depth_sweep(options)
        print(result.last_block.pivot_table(index=["init", "depth"], columns="placement", values="ffn_grad_norm").round(4))
        print(result.ratios.drop(columns="init_label").round(3).to_string(index=False))
    else:
        result = warmup.run_warmup(options, on_progress=_print_progress)
        print(file=sys.stderr)
        print(result.summary().round(3).to_string(index=False))
        return _print_sentence(result.sentence(), 0 if result.status == "finished" else 1)
    return _print_sentence(result.sentence, 0)


def _sweep(options) -> int:
    if errors := [p.message for p in stability_problems(options) if p.level == "error"]:
        print("\n".join(errors), file=sys.stderr)
        return 2
    from normcore.lab.experiments.transformers.stability import run_stability

    result = run_stability(options, on_progress=_print_progress)
    print(file=sys.stderr)
    print(result.table().to_string(index=False, formatters={"final_loss": "{:.3f}".format, "max_logit": "{:.3g}".format}))
    print()
    print(result.sensitivity().round(3).to_string(index=False))
    return _print_sentence(result.sentence(), 0 if result.status == "finished" else 1)


def _print_sentence(sentence: str, code: int) -> int:
    print(sentence)
    return code


if __name__ == "__main__":
    sys.exit(main())
