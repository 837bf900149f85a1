"""Streamlit elements outside ``streamlit run`` ("bare mode"), for benchmarks that time what a
page's elements cost: each element is built and marshalled (protobuf, Arrow) but not sent."""

import streamlit.config
import streamlit.logger


def quiet() -> None:
    """Silence bare mode's warning at every element (and its "use streamlit run" notice)."""
    streamlit.config.set_option("global.showWarningOnDirectExecution", False)
    streamlit.logger.set_log_level("error")
