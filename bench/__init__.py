"""Benchmarks: voice-to-voice latency, model floor, barge-in, calls per core, REST (`python -m bench`)."""
