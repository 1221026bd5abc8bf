"""The ingress spool: where an event the broker did not ack in time is kept until forwarded.

Modules, lowest first (each imports only those above it in this list):
``frames`` (the on-disk frame format), ``log`` (group-committed appends), ``segments``
(segment files and their ``flock`` ownership), ``ledger`` (the in-flight states, the
pending count and the backlog), ``writer`` (this process's spool), ``merge`` (the
workers' backlogs merged by spool time) and ``forwarder`` (drains the spool to Kafka).
"""
