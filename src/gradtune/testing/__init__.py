"""Helpers for gradtune's own tests and benchmarks (as ``optuna.testing`` is for Optuna's)."""
