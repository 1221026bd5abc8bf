"""groupwatch analytics stage."""
