"""Every groupwatch setting, read from environment variables (one place, every stage).

Each field is ``GROUPWATCH_<FIELD NAME IN CAPITALS>``, except ``kafka_bootstrap_servers``
which is the conventional ``KAFKA_BOOTSTRAP_SERVERS``. The README's configuration
reference lists them all; ``groupwatch settings`` prints the effective values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from groupwatch.contracts.limits import SDKAPPID_MAX_CHARS


def _parse_csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class Settings(BaseSettings):
    """The whole configuration. Construct with keyword overrides in tests."""

    model_config = SettingsConfigDict(
        env_prefix="GROUPWATCH_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    # --- Kafka ---------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="An existing cluster. When set, no local broker is started.",
    )
    kafka_port: int = Field(9092, description="Local broker PLAINTEXT port (127.0.0.1).")
    kafka_controller_port: int = Field(9093, description="Local broker KRaft controller port.")
    kafka_heap: str = Field("512m", description="Local broker JVM heap per node (-Xmx/-Xms).")
    kafka_brokers: int = Field(
        1,
        ge=1,
        le=9,
        description="Nodes of the local KRaft cluster (combined broker + controller each): "
        "brokers on consecutive ports from GROUPWATCH_KAFKA_PORT, controllers on consecutive "
        "ports from GROUPWATCH_KAFKA_CONTROLLER_PORT (moved past the broker ports if the two "
        "ranges overlap).",
    )
    state_dir: Path = Field(Path(".groupwatch"), description="Local state: broker data, spool.")
    kafka_data_dir: Path | None = Field(
        None, description="Local broker data dir (default <state_dir>/kafka)."
    )
    kafka_jars_dir: Path = Field(
        Path.home() / ".cache" / "groupwatch" / "kafka-jars",
        description="Cache of the broker jars resolved by Maven (reused across runs).",
    )
    topic_prefix: str = Field("groupwatch", description="Prefix of every topic name.")
    partitions: int = Field(6, ge=1, description="Partitions of every pipeline topic.")
    replication_factor: int | None = Field(
        None,
        ge=1,
        description="Replication factor of new topics (default: 3 on a cluster of 3 or more "
        "brokers, else 1).",
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="min.insync.replicas of new topics (default: 2 when the replication "
        "factor is 3 or more, else the broker's setting).",
    )
    retention_hours: int = Field(168, ge=1, description="Retention of event topics (hours).")
    startup_timeout_seconds: float = Field(
        90.0,
        gt=0,
        description="How long each stage, `topics create` and `up` wait out transient broker "
        "conditions at start (not leader, coordinator loading, broker not up yet) before "
        "failing with one sentence.",
    )

    # --- Ingress -------------------------------------------------------------------
    sdkappids: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Allowed SdkAppid values, comma separated."
    )
    callback_tokens: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='Per-app callback tokens, "appid:token,appid:token".',
        repr=False,
    )
    unsigned_sdkappids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Allowed apps accepted without a callback token (no Sign check), comma "
        "separated: an explicit opt-in; any other allowed app without a token stops ingest.",
    )
    sign_max_skew_seconds: int = Field(60, ge=0, description="Max |now - RequestTime|.")
    callback_path: str = Field("/callback", description="Callback URL path (/ also accepted).")
    max_body_bytes: int = Field(65536, ge=1024, description="Largest accepted callback body.")
    keep_message_content: bool = Field(
        False, description="Store message text and CloudCustomData (off: privacy by default)."
    )
    ingest_host: str = Field("127.0.0.1", description="Ingress listen address.")
    ingest_port: int = Field(8080, description="Ingress listen port.")
    ingest_workers: int = Field(2, ge=1, description="Ingress worker processes.")
    ingest_threads: int = Field(32, ge=1, description="Request threads per ingress worker.")
    ingest_server: Literal["granian", "gunicorn"] = Field(
        "granian", description="Ingress WSGI server (granian measured faster; see PERFORMANCE)."
    )
    ingest_keepalive_seconds: int = Field(
        75, ge=0, description="Idle keep-alive time of ingress connections (s)."
    )
    publish_timeout_ms: int = Field(
        800, ge=50, description="Wait for the broker ack before spooling (ms, under 2 s)."
    )
    spool_dir: Path | None = Field(None, description="Spool dir (default <state_dir>/spool).")
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20, description="Spool size cap (bytes).")

    # --- Stream --------------------------------------------------------------------
    window_seconds: int = Field(60, ge=1, description="Tumbling window size (event time).")
    grace_seconds: int = Field(30, ge=0, description="Grace after window end (event time).")
    idle_close_seconds: int = Field(
        30,
        ge=0,
        description=(
            "Idle allowance: an input partition with nothing unread that read nothing for this"
            " long holds windows open only until wall clock - this; 0 = off (event time only)."
        ),
    )
    max_future_seconds: int = Field(
        5,
        ge=0,
        description="Stream time runs at most this far ahead of the worker's wall clock.",
    )
    update_interval_seconds: float = Field(
        5.0, ge=0, description="Min seconds between non-final updates of one window key."
    )
    dedup_seconds: int = Field(300, ge=1, description="Same event_id within this counts once.")
    alert_threshold: int = Field(20, ge=1, description="Alert when group window failures >= this.")
    alert_baseline_factor: float = Field(
        3.0, gt=1, description="Alert when failures >= factor x the group's EWMA baseline."
    )
    alert_ewma_alpha: float = Field(0.3, gt=0, le=1, description="EWMA weight of a new window.")
    alert_min_failures: int = Field(
        5, ge=1, description="Baseline alerts need at least this many window failures."
    )
    stream_app_id: str = Field("groupwatch-stream", description="Faust app id (consumer group).")
    stream_state_dir: Path | None = Field(
        None, description="Faust table store dir (default <state_dir>/stream)."
    )
    stream_web_port: int = Field(6066, description="Stream worker /metrics and /healthz port.")
    stream_session_timeout_seconds: float = Field(
        10.0,
        ge=3,
        le=300,
        description=(
            "Stream worker's consumer-group session: a dead worker's partitions move after"
            " this; a worker that heard no heartbeat reply for this long writes nothing."
        ),
    )

    # --- Analytics -----------------------------------------------------------------
    duckdb_path: Path = Field(Path("data/groupwatch.duckdb"), description="The DuckDB file.")
    snapshot_path: Path = Field(
        Path("data/groupwatch-snapshot.duckdb"), description="Read-only snapshot for BI tools."
    )
    snapshot_interval_seconds: float = Field(30.0, ge=1, description="Snapshot period.")
    sink_batch_rows: int = Field(10000, ge=1, description="Max rows per sink transaction.")
    sink_batch_ms: int = Field(200, ge=1, description="Max ms a sink batch waits to fill.")
    sink_duckdb_threads: int | None = Field(
        None,
        ge=1,
        description="DuckDB threads of the sink's database (default: CPUs - 1, at least 1; "
        "one core is left to the sink's Kafka fetch and decode).",
    )
    sink_checkpoint_mb: int = Field(
        64,
        ge=1,
        description="WAL size (MiB) at which the sink checkpoints between batches, never "
        "inside a commit (a quarter of it while idle; DuckDB's own checkpoint at 4 x as a "
        "safety net): the most WAL a crash replays on restart.",
    )
    sink_group_id: str = Field("groupwatch-sink", description="Sink consumer group id.")
    query_host: str = Field("127.0.0.1", description="Sink SQL endpoint address (loopback).")
    query_port: int = Field(8765, description="Sink SQL endpoint port.")
    query_allow_non_loopback: bool = Field(
        False,
        description="Let the SQL endpoint bind beyond loopback (only in a container whose "
        "port is published on the host's 127.0.0.1).",
    )
    query_timeout_seconds: float = Field(10.0, gt=0, description="Served statement timeout.")
    query_max_rows: int = Field(10000, ge=1, description="Served result row cap.")
    query_memory_mb: int = Field(
        1024,
        ge=16,
        description="Memory (MiB) one served statement may use: its worker process is killed "
        "beyond it (also DuckDB's memory_limit there). The same for the CLI's fallback.",
    )
    query_temp_mb: int = Field(
        1024,
        ge=0,
        description="DuckDB temp space (MiB) a statement of the CLI's fallback may spill "
        "to; a statement served by the sink never spills (its temp dir is the sink's).",
    )
    query_max_response_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest served answer (bytes, serialized); larger ones are an error.",
    )
    query_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest /query request body (bytes); larger: 413."
    )
    query_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "::1"],
        description="Host header names the SQL endpoint answers (comma-separated; any other "
        "is 403, against DNS rebinding). The configured query host is always allowed.",
    )

    # --- Dashboard -----------------------------------------------------------------
    dashboard_host: str = Field(
        "127.0.0.1",
        description="Dashboard listen address (loopback; 0.0.0.0 only in a container whose "
        "port is published on the host's 127.0.0.1).",
    )
    dashboard_port: int = Field(8780, description="Dashboard listen port.")

    # --- Notify --------------------------------------------------------------------
    notify_wecom_url: str | None = Field(
        None,
        description="WeCom group robot webhook (https://qyapi.weixin.qq.com/cgi-bin/webhook/"
        "send?key=…): markdown messages.",
        repr=False,
    )
    notify_slack_url: str | None = Field(
        None, description="Slack incoming webhook URL: text messages.", repr=False
    )
    notify_webhook_url: str | None = Field(
        None,
        description="Generic JSON webhook: the alert record as in its schema, an "
        "Idempotency-Key header per alert.",
        repr=False,
    )
    notify_webhook_secret: str | None = Field(
        None,
        description="When set, the webhook's X-Groupwatch-Signature header is "
        '"sha256=" + hex HMAC-SHA256 of the body with this secret.',
        repr=False,
    )
    notify_dashboard_url: str | None = Field(
        None,
        description="Base URL of the dashboard: messages link to <url>/group/<group_id>"
        "?app=<sdkappid>&range=1h (`groupwatch up` sets it when it runs a dashboard).",
    )
    notify_cooldown_seconds: int = Field(
        900,
        ge=0,
        description="After an alert of (app, group, reason) is sent, later alerts of the same "
        "(app, group, reason) whose window starts within this many seconds are suppressed.",
    )
    notify_silence_apps: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="SdkAppids whose alerts are not sent, comma separated."
    )
    notify_silence_groups: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='Groups whose alerts are not sent, comma separated: "group_id" (any app) '
        'or "sdkappid:group_id".',
    )
    notify_silence_codes: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Error codes silenced, comma separated: an alert is not sent when every "
        "error code it lists is silenced.",
    )
    notify_timeout_seconds: float = Field(
        10.0, gt=0, description="HTTP timeout of one delivery attempt (connect and read)."
    )
    notify_retry_initial_seconds: float = Field(
        1.0, gt=0, description="First retry backoff (doubles per attempt, with jitter)."
    )
    notify_retry_max_backoff_seconds: float = Field(
        60.0,
        gt=0,
        description="Longest wait between two attempts (a Retry-After is honoured up to this too).",
    )
    notify_retry_max_seconds: float = Field(
        3600.0,
        gt=0,
        description="A message still not accepted after retrying this long becomes a "
        "notify-failures record (an outage shorter than this loses nothing).",
    )
    notify_wecom_per_minute: int = Field(
        20, ge=1, description="WeCom robot messages per minute (its limit); excess -> a digest."
    )
    notify_slack_per_minute: int = Field(
        60, ge=1, description="Slack messages per minute; excess -> a digest."
    )
    notify_webhook_per_minute: int = Field(
        0, ge=0, description="Webhook requests per minute, 0 = unlimited (paced, never digested)."
    )
    notify_digest_threshold: int = Field(
        10,
        ge=2,
        description="When this many groups alert in the same window, WeCom and Slack get one "
        "digest message for them instead of one message each.",
    )
    notify_batch_max: int = Field(
        100,
        ge=1,
        description="Most records read per batch: a batch's offsets are committed once all of "
        "it is delivered, so a crash re-delivers at most one batch.",
    )
    notify_group_id: str = Field("groupwatch-notify", description="Notify consumer group id.")
    notify_state_dir: Path | None = Field(
        None, description="Cooldown / open-alert state file dir (default <state_dir>/notify)."
    )
    notify_host: str = Field("127.0.0.1", description="Notify /metrics and /healthz address.")
    notify_port: int = Field(6070, description="Notify /metrics and /healthz port.")

    def token_problem(self) -> str | None:
        """One sentence naming the allowed apps that have no callback token and are not
        opted in to unsigned callbacks (the ingress refuses to start then), or None."""
        opted_in = set(self.unsigned_sdkappids)
        missing = [a for a in self.sdkappids if a not in self.callback_tokens and a not in opted_in]
        if not missing:
            return None
        return (
            f"SdkAppid {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} allowed "
            "(GROUPWATCH_SDKAPPIDS) but without a callback token: "
            f"set GROUPWATCH_CALLBACK_TOKENS={missing[0]}:<token>, or accept its callbacks "
            f"unsigned with GROUPWATCH_UNSIGNED_SDKAPPIDS={','.join(missing)}."
        )

    @field_validator("sdkappids", "unsigned_sdkappids", mode="before")
    @classmethod
    def _split_appids(cls, value: object) -> object:
        return _parse_csv(value) if isinstance(value, str) else value

    @field_validator("notify_silence_apps", "notify_silence_groups", mode="before")
    @classmethod
    def _split_silences(cls, value: object) -> object:
        return _parse_csv(value) if isinstance(value, str) else value

    @field_validator("notify_silence_codes", mode="before")
    @classmethod
    def _split_codes(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return [int(part) for part in _parse_csv(value)]
        except ValueError:
            raise ValueError(
                "GROUPWATCH_NOTIFY_SILENCE_CODES is a comma-separated list of "
                "error codes (integers)"
            ) from None

    @field_validator(
        "notify_wecom_url", "notify_slack_url", "notify_webhook_url", "notify_dashboard_url"
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("a notify URL starts with http:// or https://")
        return value.strip()

    @field_validator("query_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return _parse_csv(value) if isinstance(value, str) else value

    @field_validator("sdkappids")
    @classmethod
    def _appids_fit_the_records(cls, value: list[str]) -> list[str]:
        for appid in value:
            if len(appid) > SDKAPPID_MAX_CHARS:
                raise ValueError(f"an SdkAppid is at most {SDKAPPID_MAX_CHARS} characters long")
        return value

    @field_validator("callback_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        tokens: dict[str, str] = {}
        for item in _parse_csv(value):
            appid, sep, token = item.partition(":")
            if not sep or not appid.strip() or not token:
                raise ValueError('GROUPWATCH_CALLBACK_TOKENS entries must look like "appid:token"')
            if not 1 <= len(token) <= 128:
                raise ValueError("a callback token is 1 to 128 characters long")
            tokens[appid.strip()] = token
        return tokens

    @field_validator("callback_path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("GROUPWATCH_CALLBACK_PATH must start with /")
        return value

    # --- derived paths ---------------------------------------------------------------
    @property
    def kafka_dir(self) -> Path:
        return self.kafka_data_dir or self.state_dir / "kafka"

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or self.state_dir / "spool"

    @property
    def stream_dir(self) -> Path:
        return self.stream_state_dir or self.state_dir / "stream"

    @property
    def notify_dir(self) -> Path:
        return self.notify_state_dir or self.state_dir / "notify"

    @property
    def notify_channels(self) -> list[str]:
        """The configured notify channels ("wecom", "slack", "webhook")."""
        urls = {
            "wecom": self.notify_wecom_url,
            "slack": self.notify_slack_url,
            "webhook": self.notify_webhook_url,
        }
        return [name for name, url in urls.items() if url]

    @property
    def uses_external_kafka(self) -> bool:
        return bool(self.kafka_bootstrap_servers)

    @property
    def bootstrap_servers(self) -> str:
        """Where every client connects: the external cluster, or the local broker."""
        return self.kafka_bootstrap_servers or ",".join(
            f"127.0.0.1:{port}" for port in self.kafka_broker_ports
        )

    @property
    def kafka_broker_ports(self) -> list[int]:
        """The local nodes' PLAINTEXT ports: consecutive from ``kafka_port``."""
        return [self.kafka_port + i for i in range(self.kafka_brokers)]

    @property
    def kafka_controller_ports(self) -> list[int]:
        """The local nodes' controller ports: consecutive from ``kafka_controller_port``,
        or right after the broker ports when the two ranges would overlap (the defaults
        9092 / 9093 with 3 nodes: brokers 9092-9094, controllers 9095-9097)."""
        n, first = self.kafka_brokers, self.kafka_controller_port
        if n > 1 and self.kafka_port <= first + n - 1 and first <= self.kafka_port + n - 1:
            first = self.kafka_port + n
        return [first + i for i in range(n)]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with keyword overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
