"""Destinations: model rows become validated elements, elements become packed request bodies."""
