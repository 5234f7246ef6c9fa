"""The drift report: its data model, charts (matplotlib, static SVG) and the self-contained HTML page."""
