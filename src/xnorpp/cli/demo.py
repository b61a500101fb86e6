"""``xnorpp demo``: train XNOR-Net++ on Fashion-MNIST and compare (see ``xnorpp.train.demo.run_demo``)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="train and evaluate XNOR-Net++ on Fashion-MNIST (what `make demo` runs)",
                              description="Trains the fmnist-net with learned gamma-o-h-w scaling on Fashion-MNIST "
                                          "(fast-cpu recipe), then the XNOR-Net and float baselines if they fit the "
                                          "time budget, and prints a table.")
    p.add_argument("--out-dir", default="runs/demo", help="where the run folders go")
    p.add_argument("--data-root", default=None, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--epochs", type=int, default=None, help="epochs of each run (default: the demo's)")
    p.add_argument("--budget-min", type=float, default=9.0,
                   help="time budget of all training runs in minutes (baselines only run if they fit)")
    p.add_argument("--no-baselines", action="store_true", help="train the XNOR-Net++ model only")
    p.add_argument("--no-export", action="store_true", help="skip exporting and measuring the packed model")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--train-subset", type=int, default=None, help="train on the first N images (quick check)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train.demo import DEMO_EPOCHS, print_demo, run_demo

    demo = run_demo(out_dir=args.out_dir, data_root=args.data_root, epochs=args.epochs or DEMO_EPOCHS,
                    budget_s=args.budget_min * 60, baselines=not args.no_baselines, progress=not args.no_progress,
                    train_subset=args.train_subset, export=not args.no_export)
    print_demo(demo)
    return 0
