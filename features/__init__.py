"""driftline features package."""
