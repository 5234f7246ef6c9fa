"""driftline monitor package."""
