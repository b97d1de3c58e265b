"""Feature computations: pure functions over lake frames, usable from a flow, a test or Dask."""
