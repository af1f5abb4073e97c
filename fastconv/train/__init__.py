"""`fastconv train`: train a named CNN from the command line (see `fastconv.train.cli`)."""
from .cli import add_parser, main, run

__all__ = ["add_parser", "main", "run"]
