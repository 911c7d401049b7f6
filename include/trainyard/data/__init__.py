"""Data shared by every feature: reading sources, immutable snapshots, validation with GX."""
