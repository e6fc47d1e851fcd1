"""Tests: postbacks."""
