"""The gateway: routing, shadow mirroring, pairing, the admin API (docs/gateway.md)."""
