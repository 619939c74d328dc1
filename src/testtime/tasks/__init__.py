"""Tasks: where problems come from, and how answers are read and checked."""
