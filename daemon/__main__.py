"""`python -m daemon` is the same as the `vanthu` command."""

from daemon.cli import main

raise SystemExit(main())
