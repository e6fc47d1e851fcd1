"""Tests: click."""
