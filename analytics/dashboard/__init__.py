"""The dashboard: analytics' read side as web pages (overview, group, error code, alerts)."""
