"""The fault drills of scripts/drills, one module per kind of fault (docs/reliability.md)."""
