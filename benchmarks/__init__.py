"""colorshare's benchmark scripts (not timed tests): run them as ``python -m benchmarks.NAME``."""
