"""`python -m fastconv.train ...`: the same as `fastconv train ...`."""
import sys

from .cli import main

sys.exit(main())
