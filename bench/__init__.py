"""gan-bench: compare GAN variants honestly (Ray Tune for scheduling, MLflow for records)."""

__version__ = "0.1.0"
