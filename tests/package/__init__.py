"""Tests: package."""
