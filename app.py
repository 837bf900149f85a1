"""normcore lab: the router. Run with `streamlit run app.py`."""

import streamlit as st

from pages.shared import heap
from pages.shared.navigation import OVERVIEW, PAGES

st.set_page_config(page_title="normcore lab", page_icon="🧪", layout="wide")

page = st.navigation(
    [st.Page(OVERVIEW.script, title=OVERVIEW.title, icon=OVERVIEW.icon, url_path=OVERVIEW.url_path, default=True)]
    + [st.Page(p.script, title=p.title, icon=p.icon, url_path=p.url_path) for p in PAGES]
)
with st.sidebar:
    st.caption("normcore lab: normalization layers from the formulas, exact against torch.nn.")
page.run()
heap.freeze_imports()  # what the page imported: see pages/shared/heap.py
