"""Data: contracts, the simulated world, real-data adapters and lake I/O."""
