"""Architectures of the papers' zoo that no library on PyPI ships, written from their papers."""
