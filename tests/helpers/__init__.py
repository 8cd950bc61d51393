"""Test helpers: ``run_if`` (GPU skip marks) and ``mlflow_reader`` (reading runs back from an MLflow store)."""
