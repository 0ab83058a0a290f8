"""Facts every stepsage unit shares: standard library only, copied byte for byte into each unit."""
