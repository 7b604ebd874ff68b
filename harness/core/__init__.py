"""Shared, torch-free building blocks: atomic files, number formats, dtype names,
sample statistics, error wording, the summary schema and the scenario record."""
