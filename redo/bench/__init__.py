"""``python -m redo bench``: how fast the loops train; nothing in the science imports it."""
