"""Services that connect the ML code to the registry: worker, serving API, CLI, demo."""
