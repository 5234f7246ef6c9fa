"""driftline streams package."""
