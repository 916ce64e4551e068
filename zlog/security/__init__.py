"""Security: credentials (salted hashes), roles, and CurveZMQ keys (docs/security.md)."""
