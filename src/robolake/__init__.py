"""robolake: a data lake for robot-learning data (MinIO cluster, lakeFS versioning, accelerator)."""

__version__ = "0.1.0"
