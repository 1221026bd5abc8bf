"""groupwatch stream stage."""
