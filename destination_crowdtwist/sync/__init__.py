"""The Airbyte side of a sync: message parsing, checkpoints, the worker pipeline, the report."""
