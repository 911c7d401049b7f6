"""``python -m trainyard_dev``: see :mod:`trainyard_dev.cli`."""

from trainyard_dev.cli import main

raise SystemExit(main())
