"""Reports of stored runs: terminal tables, PNG plots and HTML pages, from the store alone."""
