"""Overview: what the lab is, one picture per page, and a link to each."""

import streamlit as st

from pages.shared.navigation import CARD_GRID_CSS, CARDS_PER_ROW, card_rows

st.title("🧪 normcore lab")
st.markdown(
    """
An interactive lab for the normalization layers of deep learning. Every layer here is
**normcore**, written from the formulas and checked against `torch.nn` to the last detail:
outputs, running statistics, gradients and state_dict.

* **BatchNorm** shares a mean and variance across the batch, per channel, and keeps running
  estimates for evaluation. **LayerNorm**, **GroupNorm**, **InstanceNorm** and **RMSNorm** use
  each sample on its own, so they behave the same in training and evaluation.
* **RMSNorm**, the normalization of most large language models, is LayerNorm without the mean:
  it divides each sample by its root mean square, so its output has RMS 1 but is not zero-mean.
  Live statistics shows by how much as you move the input's mean offset.
* The controls in the sidebar (norm type, batch size, momentum, eps, groups) are shared by
  every page, and the URL carries them: copy it to share exactly what you see.
"""
)

st.html(CARD_GRID_CSS)
with st.container(key="overview_cards"):  # a grid: titles keep their words whole at laptop widths, any page count fits
    for row in card_rows():
        for column, page in zip(st.columns(CARDS_PER_ROW, gap="medium"), row):
            with column:
                st.subheader(f"{page.icon} {page.title}")
                if (thumbnail := page.thumbnail()) is not None:
                    st.image(thumbnail, width="stretch")
                st.write(page.blurb)
                st.page_link(page.script, label=f"Open {page.title}", icon="➡️")
