"""driftline models package."""
