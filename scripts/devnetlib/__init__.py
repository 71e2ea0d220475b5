"""Local Crynux network (era D) for tests and the demo; run with `python -m devnetlib` (see README.md)."""
