"""`attnlens sst2`: the SST-2 correlation study."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from attnlens._checks import _check_creatable_folder
from attnlens.commands._console import progress_bar, stderr_console
from attnlens.experiments.outputs import check_output_folder
from attnlens.experiments.sst2 import SST2StudyConfig, run_sst2_study, validate_sst2_config, write_sst2_outputs
from attnlens.experiments.study_methods import METHOD_FAMILIES

HELP = "Correlate attention relevance with input-gradient saliency on SST-2, per method and layer."


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(","))  # empty entries are kept, so validation reports them


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    defaults = SST2StudyConfig()
    parser = subparsers.add_parser("sst2", help=HELP, description=HELP)
    parser.add_argument("--model", help="hub id or local folder of a sequence classifier "
                        "(default: $ATTNLENS_MODEL, textattack/bert-base-uncased-SST-2, or the fine-tuned default)")
    parser.add_argument("--data", help="folder holding sst2/{train,dev}.tsv (default: $ATTNLENS_DATA, else the hub)")
    parser.add_argument("--split", default=defaults.split, choices=["dev", "train"])
    parser.add_argument("--limit", type=int, help="first N sentences only")
    parser.add_argument("--methods", default=",".join(defaults.methods),
                        help=f"comma list of {', '.join(METHOD_FAMILIES)} (default: %(default)s)")
    parser.add_argument("--thresholds", default=",".join(defaults.thresholds),
                        help="selective-rollout thresholds, comma list (default: %(default)s)")
    parser.add_argument("--alpha", dest="alphas", default=",".join(defaults.alphas),
                        help="network-diffusion strengths in [0, 1), comma list (default: %(default)s)")
    parser.add_argument("--reduce", default=defaults.reduce, choices=["max", "cls", "mean"],
                        help="relevance from joint attention: max over query rows (thesis) or the [CLS] row")
    parser.add_argument("--saliency", default=defaults.saliency, choices=["sum_abs", "l2", "grad_x_input"])
    parser.add_argument("--saliency-at", default=defaults.saliency_at, choices=["layer_input", "word_embeddings"],
                        help="where the input gradient is taken (default: %(default)s; see README)")
    parser.add_argument("--target", default=defaults.target, choices=["pred", "gold"])
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--device", default=defaults.device, choices=["cpu", "cuda"])
    parser.add_argument("--exclude-special", action="store_true", help="drop [CLS]/[SEP] from the correlation")
    parser.add_argument("--distance", default=defaults.distance, choices=["frobenius", "frobenius_per_token"])
    parser.add_argument("--head-fusion", default=defaults.head_fusion, choices=["mean", "max", "min"])
    parser.add_argument("--seed", type=int, default=defaults.seed, help="bootstrap seed")
    parser.add_argument("--out", help="output folder (default: runs/sst2-<model>-<time>)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = SST2StudyConfig(
        model=args.model, data=args.data, split=args.split, limit=args.limit, methods=_csv(args.methods),
        thresholds=_csv(args.thresholds), alphas=_csv(args.alphas),
        reduce=args.reduce, saliency=args.saliency, saliency_at=args.saliency_at, target=args.target,
        batch_size=args.batch_size, device=args.device, exclude_special=args.exclude_special,
        distance=args.distance, head_fusion=args.head_fusion, seed=args.seed,
    )
    validate_sst2_config(config)
    if args.out is not None:
        check_output_folder(args.out, "--out")
    else:
        _check_creatable_folder("runs", "runs")  # the default output goes to a new folder inside runs/
    out = Path(args.out) if args.out is not None else None
    with progress_bar("SST-2 study", quiet=args.quiet) as update:
        result = run_sst2_study(config, progress=update)
    if out is None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(result.model).name or result.model).strip("-")
        out = Path("runs") / f"sst2-{slug}-{time.strftime('%Y%m%d-%H%M%S')}"
    written = write_sst2_outputs(result, str(out))
    from attnlens.viz.tables import rich_table, study_rows  # noqa: PLC0415

    console = stderr_console(args.quiet)
    header, rows = study_rows(result.summaries)
    console.print(rich_table(header, rows, title=(
        f"SST-2 {config.split}: {result.n_examples} sentences, accuracy {result.accuracy:.4f} — "
        f"median Spearman ρ (relevance vs {config.saliency} saliency) per layer")))
    console.print(f"results written to {written}")
    return 0
