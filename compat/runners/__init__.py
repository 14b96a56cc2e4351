"""Where cells run: the runner protocol, docker and local runners, the engine, images."""
