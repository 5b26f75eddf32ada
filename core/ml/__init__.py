"""Pure ML: datasets, architectures, training, evaluation, inference; no `db`, no `streamlit`."""
