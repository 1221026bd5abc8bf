-- The schema as released: the SQL of each migration exactly as groupwatch ran it before
-- analytics/tables.py (analytics/migrations.py at 02c29c6). tests/analytics/test_tables.py
-- builds a database with it, as that release's sink did, and migrates it. Never edit a
-- released migration here: add the next one.

-- migration 1: tables: exceptions, sends, failure windows, alerts, offsets
CREATE TABLE exceptions (
    event_id          VARCHAR PRIMARY KEY,
    sdkappid          VARCHAR NOT NULL,
    callback_command  VARCHAR NOT NULL,
    group_id          VARCHAR NOT NULL,
    group_type        VARCHAR,
    from_account      VARCHAR,
    operator_account  VARCHAR,
    random            BIGINT,
    online_only       BOOLEAN,
    msg_types         VARCHAR[],
    error_code        INTEGER NOT NULL,
    error_info        VARCHAR,
    error_category    VARCHAR NOT NULL,
    event_time        TIMESTAMPTZ NOT NULL,
    received_at       TIMESTAMPTZ NOT NULL,
    client_ip         VARCHAR,
    platform          VARCHAR,
    extra             JSON,
    msg_body          JSON,
    cloud_custom_data VARCHAR
);

CREATE TABLE send_ids (
    event_id   VARCHAR PRIMARY KEY,
    event_time TIMESTAMPTZ NOT NULL
);

CREATE TABLE sends_minutely (
    sdkappid VARCHAR NOT NULL,
    group_id VARCHAR NOT NULL,
    minute   TIMESTAMPTZ NOT NULL,
    sends    BIGINT NOT NULL,
    PRIMARY KEY (sdkappid, group_id, minute)
);

CREATE TABLE failure_windows (
    sdkappid            VARCHAR NOT NULL,
    group_id            VARCHAR NOT NULL,
    group_type          VARCHAR,
    error_code          INTEGER NOT NULL,
    error_category      VARCHAR NOT NULL,
    window_start        TIMESTAMPTZ NOT NULL,
    window_end          TIMESTAMPTZ NOT NULL,
    failures            BIGINT NOT NULL,
    failures_per_minute DOUBLE NOT NULL,
    senders             BIGINT NOT NULL,
    first_event_time    TIMESTAMPTZ NOT NULL,
    last_event_time     TIMESTAMPTZ NOT NULL,
    group_failures      BIGINT NOT NULL,
    group_sends         BIGINT,
    failure_ratio       DOUBLE,
    final               BOOLEAN NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (sdkappid, group_id, error_code, window_start)
);

CREATE TABLE alerts (
    sdkappid        VARCHAR NOT NULL,
    group_id        VARCHAR NOT NULL,
    group_type      VARCHAR,
    window_start    TIMESTAMPTZ NOT NULL,
    window_end      TIMESTAMPTZ NOT NULL,
    reason          VARCHAR NOT NULL,
    failures        BIGINT NOT NULL,
    threshold       BIGINT NOT NULL,
    baseline        DOUBLE,
    baseline_factor DOUBLE NOT NULL,
    top_error_codes STRUCT(error_code INTEGER, error_category VARCHAR, failures BIGINT)[],
    group_sends     BIGINT,
    failure_ratio   DOUBLE,
    raised_at       TIMESTAMPTZ NOT NULL,
    raised_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (sdkappid, group_id, window_start, reason)
);

CREATE TABLE kafka_offsets (
    topic       VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, "partition")
);

CREATE TABLE sink_rejects (
    topic       VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset"    BIGINT NOT NULL,
    error       VARCHAR NOT NULL,
    raw         BLOB,
    rejected_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (topic, "partition", "offset")
);

-- migration 2: views: trend, top groups, error breakdown, ratios
CREATE VIEW failure_trend_minute AS
SELECT date_trunc('minute', event_time) AS minute,
       sdkappid,
       error_code,
       any_value(error_category) AS error_category,
       count(*) AS failures,
       count(DISTINCT group_id) AS groups
FROM exceptions
GROUP BY ALL;

CREATE VIEW top_groups_24h AS
WITH f AS (
    SELECT sdkappid, group_id, count(*) AS failures,
           count(DISTINCT from_account) AS senders,
           mode(error_code) AS top_error_code,
           max(event_time) AS last_failure
    FROM exceptions
    WHERE event_time >= now() - INTERVAL 24 HOUR
    GROUP BY ALL
), s AS (
    SELECT sdkappid, group_id, sum(sends)::BIGINT AS sends
    FROM sends_minutely
    WHERE minute >= date_trunc('minute', now() - INTERVAL 24 HOUR)
    GROUP BY ALL
), apps_with_sends AS (SELECT DISTINCT sdkappid FROM sends_minutely)
SELECT f.sdkappid, f.group_id, f.failures, f.senders, f.top_error_code, f.last_failure,
       CASE WHEN a.sdkappid IS NOT NULL THEN coalesce(s.sends, 0) END AS sends,
       CASE WHEN a.sdkappid IS NOT NULL
            THEN f.failures / (f.failures + coalesce(s.sends, 0)) END AS failure_ratio
FROM f
LEFT JOIN s USING (sdkappid, group_id)
LEFT JOIN apps_with_sends a ON a.sdkappid = f.sdkappid
ORDER BY f.failures DESC, f.sdkappid, f.group_id;

CREATE VIEW error_breakdown AS
SELECT sdkappid, error_category,
       count(*) AS failures,
       count(DISTINCT error_code) AS error_codes,
       count(DISTINCT group_id) AS groups,
       count(*) / sum(count(*)) OVER (PARTITION BY sdkappid) AS share
FROM exceptions
GROUP BY sdkappid, error_category;

CREATE VIEW failure_ratio_by_group AS
WITH f AS (
    SELECT sdkappid, group_id, count(*) AS failures FROM exceptions GROUP BY ALL
), s AS (
    SELECT sdkappid, group_id, sum(sends)::BIGINT AS sends FROM sends_minutely GROUP BY ALL
), apps_with_sends AS (SELECT DISTINCT sdkappid FROM sends_minutely)
SELECT sdkappid, group_id,
       coalesce(f.failures, 0) AS failures,
       CASE WHEN a.sdkappid IS NOT NULL THEN coalesce(s.sends, 0) END AS sends,
       CASE WHEN a.sdkappid IS NOT NULL
            THEN coalesce(f.failures, 0) / (coalesce(f.failures, 0) + coalesce(s.sends, 0))
       END AS failure_ratio
FROM f
FULL OUTER JOIN s USING (sdkappid, group_id)
LEFT JOIN apps_with_sends a USING (sdkappid);

-- migration 3: rollups: failures and sends per minute / hour, last seen
CREATE TABLE failures_minutely (
    sdkappid       VARCHAR NOT NULL,
    minute         TIMESTAMPTZ NOT NULL,
    error_code     INTEGER NOT NULL,
    error_category VARCHAR NOT NULL,
    failures       BIGINT NOT NULL,
    PRIMARY KEY (sdkappid, minute, error_code, error_category)
);

CREATE TABLE group_hourly (
    sdkappid VARCHAR NOT NULL,
    hour     TIMESTAMPTZ NOT NULL,
    group_id VARCHAR NOT NULL,
    failures BIGINT NOT NULL,
    PRIMARY KEY (sdkappid, hour, group_id)
);

CREATE TABLE code_groups_seen (
    sdkappid        VARCHAR NOT NULL,
    error_code      INTEGER NOT NULL,
    group_id        VARCHAR NOT NULL,
    last_event_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sdkappid, error_code, group_id)
);

CREATE TABLE senders_seen (
    sdkappid        VARCHAR NOT NULL,
    from_account    VARCHAR NOT NULL,
    last_event_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sdkappid, from_account)
);

CREATE TABLE code_senders_seen (
    sdkappid        VARCHAR NOT NULL,
    error_code      INTEGER NOT NULL,
    from_account    VARCHAR NOT NULL,
    last_event_time TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sdkappid, error_code, from_account)
);

CREATE TABLE sends_app_minutely (
    sdkappid VARCHAR NOT NULL,
    minute   TIMESTAMPTZ NOT NULL,
    sends    BIGINT NOT NULL,
    PRIMARY KEY (sdkappid, minute)
);

CREATE TABLE group_sends_hourly (
    sdkappid VARCHAR NOT NULL,
    hour     TIMESTAMPTZ NOT NULL,
    group_id VARCHAR NOT NULL,
    sends    BIGINT NOT NULL,
    PRIMARY KEY (sdkappid, hour, group_id)
);

CREATE TABLE rollup_state (
    id         INTEGER PRIMARY KEY,
    next_rowid BIGINT NOT NULL,
    rows       BIGINT NOT NULL
);

INSERT INTO rollup_state VALUES (1, 0, 0);
INSERT INTO failures_minutely (sdkappid, minute, error_code, error_category, failures)
SELECT sdkappid, date_trunc('minute', event_time), error_code, error_category, count(*)
FROM exceptions GROUP BY ALL
ON CONFLICT DO UPDATE SET failures = failures_minutely.failures + excluded.failures;
INSERT INTO group_hourly (sdkappid, hour, group_id, failures)
SELECT sdkappid, date_trunc('hour', event_time), group_id, count(*)
FROM exceptions GROUP BY ALL
ON CONFLICT DO UPDATE SET failures = group_hourly.failures + excluded.failures;
INSERT INTO code_groups_seen (sdkappid, error_code, group_id, last_event_time)
SELECT sdkappid, error_code, group_id, max(event_time)
FROM exceptions GROUP BY ALL
ON CONFLICT DO UPDATE SET last_event_time = excluded.last_event_time WHERE excluded.last_event_time > code_groups_seen.last_event_time;
INSERT INTO senders_seen (sdkappid, from_account, last_event_time)
SELECT sdkappid, from_account, max(event_time)
FROM exceptions WHERE from_account IS NOT NULL GROUP BY ALL
ON CONFLICT DO UPDATE SET last_event_time = excluded.last_event_time WHERE excluded.last_event_time > senders_seen.last_event_time;
INSERT INTO code_senders_seen (sdkappid, error_code, from_account, last_event_time)
SELECT sdkappid, error_code, from_account, max(event_time)
FROM exceptions WHERE from_account IS NOT NULL GROUP BY ALL
ON CONFLICT DO UPDATE SET last_event_time = excluded.last_event_time WHERE excluded.last_event_time > code_senders_seen.last_event_time;
UPDATE rollup_state SET next_rowid = (SELECT coalesce(max(rowid) + 1, 0) FROM exceptions), rows = (SELECT count(*) FROM exceptions);
INSERT INTO sends_app_minutely (sdkappid, minute, sends)
SELECT sdkappid, minute, sum(sends)::BIGINT
FROM sends_minutely GROUP BY ALL
ON CONFLICT DO UPDATE SET sends = sends_app_minutely.sends + excluded.sends;
INSERT INTO group_sends_hourly (sdkappid, hour, group_id, sends)
SELECT sdkappid, date_trunc('hour', minute), group_id, sum(sends)::BIGINT
FROM sends_minutely GROUP BY ALL
ON CONFLICT DO UPDATE SET sends = group_sends_hourly.sends + excluded.sends;

-- migration 4: group rollups: per group, minute, sender id and code; per day and group
CREATE TABLE group_ids (
    sdkappid VARCHAR NOT NULL,
    group_id VARCHAR NOT NULL,
    gid      INTEGER NOT NULL,
    PRIMARY KEY (sdkappid, group_id)
);

CREATE TABLE sender_ids (
    from_account VARCHAR PRIMARY KEY,
    sid          INTEGER NOT NULL
);

CREATE TABLE group_senders_minutely (
    gid        INTEGER NOT NULL,
    minute     TIMESTAMPTZ NOT NULL,
    sid        INTEGER,
    error_code INTEGER NOT NULL,
    failures   BIGINT NOT NULL
);

CREATE TABLE group_daily (
    sdkappid VARCHAR NOT NULL,
    day      TIMESTAMPTZ NOT NULL,
    group_id VARCHAR NOT NULL,
    failures BIGINT NOT NULL,
    PRIMARY KEY (sdkappid, day, group_id)
);

INSERT INTO group_ids (sdkappid, group_id, gid)
SELECT sdkappid, group_id, (SELECT coalesce(max(gid), 0) FROM group_ids)
    + row_number() OVER (ORDER BY sdkappid, group_id)
FROM (SELECT DISTINCT sdkappid, group_id FROM (SELECT * FROM exceptions WHERE rowid < (SELECT next_rowid FROM rollup_state))) ANTI JOIN group_ids
USING (sdkappid, group_id);
INSERT INTO sender_ids (from_account, sid)
SELECT from_account, (SELECT coalesce(max(sid), 0) FROM sender_ids)
    + row_number() OVER (ORDER BY from_account)
FROM (SELECT DISTINCT from_account FROM (SELECT * FROM exceptions WHERE rowid < (SELECT next_rowid FROM rollup_state)) WHERE from_account IS NOT NULL)
ANTI JOIN sender_ids USING (from_account);
INSERT INTO group_senders_minutely (gid, minute, sid, error_code, failures)
SELECT g.gid, date_trunc('minute', r.event_time) AS minute, s.sid, r.error_code, count(*)
FROM (SELECT * FROM exceptions WHERE rowid < (SELECT next_rowid FROM rollup_state)) r JOIN group_ids g USING (sdkappid, group_id)
LEFT JOIN sender_ids s USING (from_account)
GROUP BY ALL ORDER BY minute, g.gid;
INSERT INTO group_daily (sdkappid, day, group_id, failures)
SELECT sdkappid, date_trunc('day', event_time), group_id, count(*)
FROM (SELECT * FROM exceptions WHERE rowid < (SELECT next_rowid FROM rollup_state)) GROUP BY ALL
ON CONFLICT DO UPDATE SET failures = group_daily.failures + excluded.failures;
