"""CI: the GitHub Actions workflow generated from the matrix."""
