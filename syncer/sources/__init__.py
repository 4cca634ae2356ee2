"""Sources: what a stream is, how its pages are walked, and the vendors' stream declarations."""
