"""The production shape without Docker (``make prod-local``): see :mod:`.stack`."""
