"""Read-only queries behind the dashboard: aggregations, filtered and paged lists."""
