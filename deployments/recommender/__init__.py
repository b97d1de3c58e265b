"""The recommender service (one process per slot: blue, green, shadow)."""
