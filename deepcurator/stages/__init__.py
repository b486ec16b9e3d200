"""The per-item and table stages: labels, download, process."""
