"""`python -m helpers ...`: the command line (see `helpers.cli`)."""

from helpers.cli import main

raise SystemExit(main())
