"""``python -m trainyard``: see :mod:`trainyard.cli`."""

from trainyard.cli import main

raise SystemExit(main())
