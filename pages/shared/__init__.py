"""Streamlit helpers shared by the router and every page: the page list and the shared controls."""
