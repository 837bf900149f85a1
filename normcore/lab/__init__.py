"""The lab: the dashboard's UI-free domain code (settings, caps, data, models, the training
loop, experiments and chart builders). It may use pandas, altair and scikit-learn, never
streamlit. The library (``normcore`` itself) never imports from here."""
