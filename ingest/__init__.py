"""groupwatch ingest stage."""
