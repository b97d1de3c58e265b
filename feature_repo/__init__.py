"""The Feast repo: entities, feature views and services built from crossfade's feature catalogue."""
