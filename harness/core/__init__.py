"""Shared, torch-free building blocks: atomic files, number formats, dtype names,
sample statistics, error wording, the summary schema, the scenario record and the plain training step."""
