"""ChannelHub core. Folders follow processes: `serving` (the API), `training` (the worker),
`ops` (CLI, launcher, demo, simulator); `actions` is the one door for every change; `ml` is
pure ML. Pieces several processes share (artifact checks, dataset registration, logging) sit here.
"""
