"""Ingress benchmark: bare Flask vs the durable ingress vs the spool path (wrk)."""
