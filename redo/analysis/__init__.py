"""From run records to the book's tables, statistics, claims and figures."""
