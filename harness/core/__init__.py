"""Shared, torch-free building blocks: atomic files, number formats, dtype names,
sample statistics, error wording and the summary schema."""
