"""Composition roots: build a DMPA or a DLMAP from its configuration and run it."""
