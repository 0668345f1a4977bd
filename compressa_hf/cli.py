"""The `compressa` console script: one subcommand per job, each a thin module under `compressa_hf.commands`.

Only argparse is imported here, so `compressa --help` answers at once; a subcommand imports what it needs.
Each subcommand parses its own flags with TRL's `TrlParser` (dataclass fields, `--config x.yaml`, CLI overrides,
unknown keys are errors).

Errors a user causes (a bad option value, a cache made with other settings, a class without clips, missing weights
or files: `ValueError`, `OSError` and `LookupError` and their kinds, `compressa_hf.errors.SourceError` among them)
end the command with their one-paragraph message and exit code 2; `--debug` shows the traceback. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from compressa_hf.progress import bars_for_log_files, log_lines_between_bars

# name -> (module with `main(argv)`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "encode": ("compressa_hf.commands.encode", "stage 1: encode every sampled frame of a split into a latent cache"),
    "distill": (
        "compressa_hf.commands.distill",
        "distil a split into K latent keyframes per video (VideoCompressa, or any method with --method)",
    ),
    "evaluate": (
        "compressa_hf.commands.evaluate",
        "train networks from scratch on every method's set at equal bytes; Table-1-style report",
    ),
    "show": ("compressa_hf.commands.show", "draw the frames a distilled set kept, as PNGs"),
    "push": ("compressa_hf.commands.push", "upload a distilled set folder to the Hub as a dataset repo"),
    "demo": ("compressa_hf.commands.demo", "run the pipeline end to end on the built-in procedural set, offline"),
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compressa",
        description="Distil labelled video datasets into a few latent keyframes per clip (VideoCompressa).",
        epilog="Run `compressa <command> --help` for a command's options.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--debug", action="store_true", help="Show the traceback of errors, not only their message.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # Before tqdm is imported (it reads its TQDM_* defaults then): stderr to a file gets a redraw every 30 s and no
    # cursor movement (compressa_hf.progress)
    bars_for_log_files()
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        if not {"-h", "--help"} & set(rest):  # --help stays instant: nothing imports torch for it
            from compressa_hf.threads import configure_threads

            # Before any torch work: one thread per free core of this process, not one per CPU (compressa_hf.threads).
            configure_threads(what=f"compressa {args.command}")
        with log_lines_between_bars():
            return module.main(rest) or 0
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"compressa {args.command}: error: {user_message(err, args.command)}\n(run `compressa --debug "
              f"{args.command} ...` for the traceback)", file=sys.stderr)  # fmt: skip
        return 2


#: What a user's input causes (see the module docstring); everything else keeps its traceback.
USER_ERRORS = (ValueError, OSError, LookupError)


def user_message(err: BaseException, command: str) -> str:
    """The error's own message, with its type when the message alone does not say what went wrong."""
    text = str(err).strip() or type(err).__name__
    unused = "Some specified arguments are not used by the HfArgumentParser: "
    if text.startswith(unused):  # an unknown or misspelled option (prefixes are not accepted either)
        return f"unknown option(s) {text[len(unused) :]}; `compressa {command} --help` lists the options"
    if isinstance(err, KeyError | FileNotFoundError) and not text.startswith(type(err).__name__):
        text = f"{type(err).__name__}: {text}"
    return text


if __name__ == "__main__":
    sys.exit(main())
