"""Readers for real market-data formats."""
