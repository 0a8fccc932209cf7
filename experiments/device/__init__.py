"""Scripts for one call of a lent GPU machine (see their docstrings); run from a checkout,
not part of the installed package."""
