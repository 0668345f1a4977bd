"""Subcommands of the `compressa` CLI; each module has `make_parser()` and `main(argv)`."""
