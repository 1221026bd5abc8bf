"""Wire contracts every stage imports: settings, topic names, record models, JSON Schemas."""

from groupwatch.contracts.catalog import CATEGORIES, ERROR_CODES, Category, error_category
from groupwatch.contracts.keys import alert_key, group_key, iso_utc, make_event_id, window_key
from groupwatch.contracts.records import (
    CMD_AFTER_SEND_MSG,
    CMD_SEND_MSG_EXCEPTION,
    COMMAND_HEADER,
    RECORD_TYPES,
    Alert,
    DlqRecord,
    ErrorCount,
    ExceptionEvent,
    FailureWindow,
    LateEvent,
    SendEvent,
    decode,
    encode,
)
from groupwatch.contracts.settings import Settings, load_settings
from groupwatch.contracts.topics import Topics, TopicSpec, topic_specs

__all__ = [
    "CATEGORIES",
    "CMD_AFTER_SEND_MSG",
    "CMD_SEND_MSG_EXCEPTION",
    "COMMAND_HEADER",
    "ERROR_CODES",
    "RECORD_TYPES",
    "Alert",
    "Category",
    "DlqRecord",
    "ErrorCount",
    "ExceptionEvent",
    "FailureWindow",
    "LateEvent",
    "SendEvent",
    "Settings",
    "TopicSpec",
    "Topics",
    "alert_key",
    "decode",
    "encode",
    "error_category",
    "group_key",
    "iso_utc",
    "load_settings",
    "make_event_id",
    "topic_specs",
    "window_key",
]
