"""Pure ML: datasets, architectures, training, evaluation, inference. Imports neither `db` nor `streamlit`."""
