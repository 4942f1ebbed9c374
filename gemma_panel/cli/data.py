"""``gemma-panel data check|prepare``: the data layer from the command line."""

from __future__ import annotations

import json
import sys

from gemma_panel.config import field_choices, field_default


def add_data_commands(sub) -> None:
    data = sub.add_parser("data", help="check and prepare datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    for name, helptext in (
        ("check", "report every problem in a dataset (exit 1 on errors)"),
        ("prepare", "clean, split and tokenize a dataset into a folder"),
    ):
        cmd = data_sub.add_parser(name, help=helptext)
        cmd.add_argument("file", help="CSV, JSONL, JSON, text or Parquet file")
        cmd.add_argument("--format", choices=["csv", "jsonl", "json", "text", "parquet"])
        cmd.add_argument("--encoding", help="e.g. cp1252 (detected when omitted)")
        cmd.add_argument("--text-mode", choices=field_choices("data.text_mode"),
                         default=field_default("data.text_mode"))
        cmd.add_argument("--column", action="append", default=[], metavar="ROLE=COLUMN",
                         help="override the detected mapping, e.g. --column prompt=question")
        cmd.add_argument("--template", choices=[c for c in field_choices("data.template")
                                                if c != "auto"],
                         help="prompt template (default: from the detected task)")
        cmd.add_argument("--model", help="measure tokens with this model's tokenizer")
        cmd.add_argument("--sequence-length", type=int, help="report examples longer than this")
        cmd.add_argument("--missing", help="drop, keep, fill:TEXT or column:NAME")
        cmd.add_argument("--validation", help="a separate validation file")
        if name == "check":
            cmd.add_argument("--json", action="store_true", help="print the report as JSON")
            cmd.set_defaults(func=cmd_data_check)
        else:
            cmd.add_argument("--out", required=True, help="output folder")
            cmd.add_argument("--validation-fraction", type=float, default=0.1)
            cmd.add_argument("--split-by", help="keep rows with the same value of this column "
                             "on one side of the split")
            cmd.add_argument("--seed", type=int, default=0)
            cmd.add_argument("--duplicates", choices=field_choices("data.duplicates"),
                             default=field_default("data.duplicates"))
            cmd.add_argument("--skip-bad-rows", action="store_true",
                             help="drop rows with errors instead of refusing the file")
            cmd.set_defaults(func=cmd_data_prepare)


def _common(args) -> dict:
    from gemma_panel.data import ReadOptions, get_template, parse_overrides
    from gemma_panel.data.readers import check_encoding

    check_encoding(args.encoding)  # a wrong option, said before the file is read
    options = {
        "read": ReadOptions(format=args.format, encoding=args.encoding,
                            text_mode=args.text_mode, columns=parse_overrides(args.column)),
        "sequence_length": args.sequence_length,
        "missing": args.missing,
        "validation_path": args.validation,
    }
    if args.template and args.template != "classification":
        options["template"] = get_template(args.template)
    if args.model:
        from gemma_panel.data import SentencePieceTokenizer
        from gemma_panel.models.loader import tokenizer_file

        options["tokenizer"] = SentencePieceTokenizer(tokenizer_file(args.model))
    return options


def cmd_data_check(args) -> int:
    from gemma_panel.data import check_dataset

    report = check_dataset(args.file, **_common(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.to_text())
    return 0 if report.ok else 1


def cmd_data_prepare(args) -> int:
    from gemma_panel.data import DatasetError, prepare_dataset
    from gemma_panel.data.prepare import check_output_dir

    check_output_dir(args.out, [args.file, args.validation])  # exit 2 before any work
    options = _common(args)
    try:
        prepared = prepare_dataset(
            args.file, validation_fraction=args.validation_fraction, split_by=args.split_by,
            seed=args.seed, duplicates=args.duplicates, skip_bad_rows=args.skip_bad_rows,
            output_dir=args.out, **options,
        )
    except DatasetError as exc:
        if exc.report is None:  # not the data (a path, an option): the CLI boundary says it
            raise
        print(f"gemma-panel: {exc}", file=sys.stderr)  # the message holds the report
        return 1  # as 'data check': the data has errors
    print(f"{len(prepared.train)} training and {len(prepared.validation)} validation examples "
          f"written to {args.out}")
    return 0
