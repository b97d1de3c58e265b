"""crossfade."""
