"""groupwatch: failure analytics for Tencent Cloud Chat group-message callbacks."""

__version__ = "0.1.0"
