"""The performance benchmark of hookline: ``python -m bench`` (see __main__)."""
