"""Test helpers: the in-thread Click API emulator and the pytest plugin."""
