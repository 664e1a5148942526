"""`python -m feedsim [options]`: see feedsim.cli."""

from feedsim.cli import main

raise SystemExit(main())
