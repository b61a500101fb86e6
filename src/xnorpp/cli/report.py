"""``xnorpp report RUN_DIR``: a Markdown or HTML page with plots for a run or a comparison folder."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="Markdown/HTML report with plots for a run or comparison folder",
        description="Write report.md (or report.html) and PNG plots into RUN_DIR/report: training curves per "
                    "scaling, accuracy bars, per-layer approximation error, learned Γ factors.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="comparison folder (xnorpp compare) or run folder (xnorpp train)")
    p.add_argument("-o", "--out-dir", help="where to write the page and plots (default: RUN_DIR/report)")
    p.add_argument("--format", choices=("md", "html"), default="md", help="page format (default: md)")
    p.add_argument("--partial", action="store_true", help="report the finished part of an incomplete run/comparison")
    p.add_argument("--approx-images", type=int, default=256,
                   help="held-out images when an approximation error must be computed (default: 256)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis import report

    page = report(args.run_dir, out_dir=args.out_dir, fmt=args.format, partial=args.partial,
                  approx_images=args.approx_images)
    print(f"wrote {page}")
    return 0
