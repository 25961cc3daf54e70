"""The sans-I/O core: verification, parsing, routing and dedupe decisions.

Nothing in this package imports Flask; the Flask layer is a thin adapter.
"""
