"""Helpers for testing and measuring the live path (a JACK dummy server, a loopback probe)."""
