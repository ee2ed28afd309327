"""Bring the stack up and down: binaries, native processes, Compose, health and first-time setup."""
