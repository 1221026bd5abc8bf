"""``groupwatch notify``: the alerts of ``<prefix>.alerts`` to WeCom, Slack and webhooks."""
