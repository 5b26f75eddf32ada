"""ChannelHub dashboard (Streamlit multipage app; entry file `app.py`)."""
