"""The algorithm in plain Python: it never imports ray."""
