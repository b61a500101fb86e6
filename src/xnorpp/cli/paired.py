"""``xnorpp paired``: paired differences by seed, epoch by epoch, between arms of comparison folders."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "paired", help="paired differences by seed and epoch between arms of comparison folders",
        description="Compare arms (one scaling's runs in one comparison folder made by `xnorpp compare`) paired by "
                    "seed, at every epoch: each arm's test top-1 curves and its mean difference to the reference "
                    "arm with a 95 % interval. Arms may come from folders trained with other model options, e.g. "
                    "Γ initialised to 1 and to α. Writes paired.md, paired.json and two plots into OUT_DIR.")
    p.add_argument("--arm", action="append", required=True, metavar="LABEL=FOLDER:SCALING", dest="arms",
                   help="an arm (repeat; FOLDER:SCALING alone is labelled with its scaling), e.g. "
                        "--arm xnor=runs/cmp:xnor --arm 'Γ=α=runs/cmp-alpha:gamma-o-h-w'")
    p.add_argument("--reference", metavar="LABEL", help="the arm the others are compared with (default: the first)")
    p.add_argument("-o", "--out-dir", required=True, help="where to write the page, its data and plots")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis import Arm, write_paired

    page = write_paired([Arm.parse(spec) for spec in args.arms], args.out_dir, reference=args.reference)
    print(f"wrote {page}")
    return 0
