"""``groupwatch simulate``: realistic, signed Chat callbacks over HTTP, and a ledger of them.

Speaks only HTTP to an ingress URL; imports nothing but ``groupwatch.contracts`` from the
pipeline, so it can drive any deployment (native, compose, remote).
"""
