"""Top layer: backend registry and placement, training, replay, reports, the CLI."""
