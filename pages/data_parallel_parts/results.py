"""The Data-parallel BN page's results, drawn from a finished (or stopped) comparison."""

import streamlit as st

from normcore.lab.experiments import data_parallel as D
from normcore.lab.experiments.data_parallel.accumulation import accumulation_table
from normcore.lab.viz import data_parallel_charts as charts

PCT = st.column_config.NumberColumn(format="%.1f%%")


def percent(frame, columns):
    return frame.assign(**{c: 100 * frame[c] for c in columns})


def show_accuracy(comparison: D.Comparison) -> None:
    st.subheader("Accuracy")
    table = percent(D.results_table(comparison), ["Test accuracy", "Train accuracy"])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "Test accuracy": PCT, "Train accuracy": PCT, "Train loss": st.column_config.NumberColumn(format="%.3f"),
        "Step (ms)": st.column_config.NumberColumn(format="%.2f"), "Samples/s": st.column_config.NumberColumn(format="%,.0f")})
    st.caption("Per-GPU batch is what local BN normalizes over; SyncBN normalizes over the global batch and GN "
               "over each sample alone. Lower the batch per worker above to see local BN fall behind, or run the "
               "batch sweep below (2 to 64 per worker) beside the GroupNorm paper's numbers.")


def show_statistics(comparison: D.Comparison) -> None:
    gap = D.eval_gap_table(comparison)
    st.subheader("Per-worker running statistics and the eval gap")
    if gap.empty:
        st.info("No BatchNorm among the normalizations run: GroupNorm keeps no running statistics.")
        return
    st.dataframe(percent(gap, ["Test acc., worker 0's statistics", "Test acc., averaged over workers"]),
                 hide_index=True, width="stretch", column_config={
                     "Test acc., worker 0's statistics": PCT, "Test acc., averaged over workers": PCT,
                     "Gap (points)": st.column_config.NumberColumn(format="%+.2f"),
                     "Largest running-mean difference": st.column_config.NumberColumn(format="%.4f"),
                     "Largest running-var ratio − 1": st.column_config.NumberColumn(format="%.3f")})
    st.vega_lite_chart(charts.rank_means_chart(D.rank_means_frame(comparison)))
    broadcast = comparison.options.broadcast_buffers
    st.caption(("With broadcast_buffers on, DDP copies worker 0's statistics to the others before every forward, so "
                "they differ only by the last step's update: what is evaluated is worker 0's alone. " if broadcast else
                "broadcast_buffers is off: with local BN each worker's running statistics follow its own slices and "
                "drift apart; evaluating worker 0's copy is not the same as averaging them. ")
               + "SyncBN's statistics are the global batch's, equal on every worker.")


def show_step_time(comparison: D.Comparison) -> None:
    st.subheader("Step time")
    st.dataframe(D.step_time_table(comparison), hide_index=True,
                 column_config={"ms": st.column_config.NumberColumn(format="%.2f")})
    st.caption(D.STEP_TIME_NOTE)


@st.cache_data(max_entries=16, show_spinner=False)
def accumulation(per_batch: int, model: str, width: int, depth: int, seed: int):
    return accumulation_table(per_batch, model, width, depth, seed)


def show_accumulation(o: D.DataParallelOptions) -> None:
    st.subheader("Reference in one process: gradient accumulation with BN")
    st.caption(f"k micro-batches of {o.per_worker_batch} (the batch per worker), gradients accumulated, against one "
               f"batch of k×{o.per_worker_batch}, on the same fresh model and samples (float64).")
    st.dataframe(accumulation(o.per_worker_batch, o.model, o.width, o.depth, o.seed), hide_index=True,
                 column_config={"Relative gradient difference": st.column_config.NumberColumn(format="%.2e")})
    st.caption(D.ACCUMULATION_NOTE)


def show_notes() -> None:
    st.subheader("Scaling out")
    st.markdown(D.SCALE_OUT_NOTE)
    st.code(D.SCALE_OUT_COMMAND, language="bash")
