"""ChannelHub core: pure ML code (`core.ml`) and the services that use the registry (`core.services`)."""
