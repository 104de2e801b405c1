"""Generators of checked-in files: the API reference, the test vectors, the plots."""
