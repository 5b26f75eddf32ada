"""The API's routers, one per resource: predictions, feedback, health."""
