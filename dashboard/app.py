"""ChannelHub dashboard entry point: only the router (`streamlit run dashboard/app.py`).

Nothing but the sign-in page exists until someone signs in (dashboard/auth.py)."""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run` puts only dashboard/ on sys.path; the pages import the db package beside it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import auth  # noqa: E402 - needs the path above

st.set_page_config(page_title="ChannelHub", page_icon=":material/hub:", layout="wide")

user = auth.signed_in()
if user is None:
    st.navigation([st.Page(auth.sign_in_page, title="Sign in", icon=":material/login:")]).run()
    st.stop()

pages = {
    "Status": [
        st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("views/loop.py", title="Loop", icon=":material/autorenew:"),
        st.Page("views/monitoring.py", title="Monitoring", icon=":material/monitoring:"),
        st.Page("views/predictions.py", title="Predictions", icon=":material/list_alt:"),
        st.Page("views/models.py", title="Models", icon=":material/model_training:"),
        st.Page("views/channels.py", title="Channels", icon=":material/alt_route:"),
    ],
    "Work": [
        st.Page("views/retrain.py", title="Retrain", icon=":material/restart_alt:"),
        st.Page("views/jobs.py", title="Jobs", icon=":material/work_history:"),
        st.Page("views/feedback.py", title="Feedback", icon=":material/rate_review:"),
    ],
    "Trail": [
        st.Page("views/audit.py", title="Audit", icon=":material/policy:"),
    ],
}

navigation = st.navigation(pages)
auth.user_sidebar(user)
navigation.run()
