"""Detector architectures (filled in by the detection work)."""
