"""From an accepted photo to its answer: the service, the line it waits in, and what the user sees meanwhile."""
