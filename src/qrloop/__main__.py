"""`python -m qrloop` is the `qrloop` command."""

from qrloop.cli import main

raise SystemExit(main())
