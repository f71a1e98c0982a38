"""Stubs generated from proto/vss/v1 by client/python/generate.py; do not edit."""
