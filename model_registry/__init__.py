"""model_registry."""
