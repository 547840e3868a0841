"""Run folders: one run = one folder of tidy tables and a record, written crash-safely."""
