"""``groupwatch up``: the native stack, started in order and stopped in reverse."""
