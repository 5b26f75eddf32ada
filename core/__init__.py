"""ChannelHub core: pure ML (`core.ml`) and the services that use the registry (`core.services`)."""
