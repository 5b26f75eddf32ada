"""Training worker process: claims jobs, trains, registers versions; job enqueueing."""
