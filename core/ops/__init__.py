"""Operations: the CLI, the launcher, the demo builder and the traffic simulator."""
