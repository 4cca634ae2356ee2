"""Destinations: the contract every destination follows (``base``), and a package per vendor in
which model rows become validated items, and items packed request bodies."""
