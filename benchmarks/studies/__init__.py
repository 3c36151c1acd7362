"""Studies of the svve pipeline, each run on its own:
``python -m benchmarks.studies.<name>``."""
