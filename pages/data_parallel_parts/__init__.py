"""Sections of the Data-parallel BN page (pages/data_parallel.py), one module each."""
