"""nfpf-report DIR: tables (Markdown, LaTeX, CSV), figures and one self-contained HTML page
from every run below DIR, including the failed and incomplete ones (docs/reports.md).

Examples
--------
nfpf-report outputs/multirun/quickstart
nfpf-report outputs/multirun/classic_ual --reference nfpf --out paper/ --wandb
"""

from __future__ import annotations

import argparse
import logging
import sys

from nfpf.report import DEFAULT_REFERENCE, build_report, log_report_to_wandb
from nfpf.report.collect import METRICS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nfpf-report", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", metavar="DIR",
                        help="directory holding run directories (searched recursively)")
    parser.add_argument("--out", default=None, help="output directory (default: DIR/report)")
    parser.add_argument("--reference", default=None,
                        help=f"selector compared against every other one in the win/tie/loss "
                             f"table (default: {DEFAULT_REFERENCE!r} when it was run)")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="significance level of the Wilcoxon win/tie/loss rule "
                             "(default 0.05)")
    parser.add_argument("--metric", choices=METRICS, default="accuracy",
                        help="metric of the tables (default accuracy; best_accuracy: best "
                             "epoch of a deep classifier)")
    parser.add_argument("--no-figures", action="store_true",
                        help="tables only (no figures; faster, no dataset reloading)")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the tables and figures to a W&B run (offline unless "
                             "you are logged in or WANDB_MODE is set)")
    parser.add_argument("--wandb-project", default="nfpf", help="W&B project (default nfpf)")
    parser.add_argument("--wandb-dir", default=None,
                        help="where W&B writes its run directory (default: the output dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s",
                        datefmt="%H:%M:%S")
    try:
        paths = build_report(args.root, args.out,
                             reference=args.reference or DEFAULT_REFERENCE, alpha=args.alpha,
                             metric=args.metric, figures=not args.no_figures)
    except (FileNotFoundError, ValueError) as error:
        print(f"nfpf-report: {error}", file=sys.stderr)
        return 2
    print(paths.summary_text)
    print(f"\nReport: {paths.index}")
    print(f"Tables: {paths.markdown}, {paths.latex}, {paths.csv.parent}/*.csv")
    if args.wandb:
        run_dir = log_report_to_wandb(paths, project=args.wandb_project, dir=args.wandb_dir)
        print(f"W&B: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
