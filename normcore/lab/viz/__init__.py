"""Altair chart builders: tidy pandas frames in, chart specs out. No streamlit here."""
