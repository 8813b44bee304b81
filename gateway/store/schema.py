"""The database schema, one migration per version (``PRAGMA user_version``)."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # v1
    """
    CREATE TABLE checks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL COLLATE NOCASE UNIQUE,
        token TEXT NOT NULL UNIQUE,
        period REAL NOT NULL,
        grace REAL NOT NULL,
        cron TEXT,
        tz TEXT NOT NULL DEFAULT 'UTC',
        status TEXT NOT NULL DEFAULT 'new',
        anchor REAL,
        last_ping REAL,
        last_start REAL,
        last_failed INTEGER NOT NULL DEFAULT 0,
        last_exit_status INTEGER,
        next_deadline REAL,
        sms_enabled INTEGER NOT NULL DEFAULT 1,
        email_enabled INTEGER NOT NULL DEFAULT 1,
        repeat REAL,
        created REAL NOT NULL,
        n_pings INTEGER NOT NULL DEFAULT 0,
        muted_until REAL,
        acked INTEGER NOT NULL DEFAULT 0,
        filters TEXT,
        down_since REAL,
        last_alert REAL,
        alert_at REAL
    );
    -- reminders due, the watchdog's second queue
    CREATE INDEX checks_alert_at ON checks(alert_at) WHERE alert_at IS NOT NULL;
    -- the watchdog's priority queue: only checks that will change status on their own
    CREATE INDEX checks_next_deadline ON checks(next_deadline) WHERE next_deadline IS NOT NULL;

    CREATE TABLE pings (
        id INTEGER PRIMARY KEY,
        check_id INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        exit_status INTEGER,
        source TEXT NOT NULL,
        remote_addr TEXT,
        method TEXT,
        user_agent TEXT,
        body TEXT
    );
    CREATE INDEX pings_by_check ON pings(check_id, id);

    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        check_id INTEGER REFERENCES checks(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        old_status TEXT,
        new_status TEXT,
        detail TEXT
    );
    CREATE INDEX events_by_check ON events(check_id, id);

    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        created REAL NOT NULL,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        text TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        not_before REAL NOT NULL,
        lease_until REAL,
        refs TEXT,
        sent_at REAL,
        check_id INTEGER REFERENCES checks(id) ON DELETE SET NULL,
        dedupe_key TEXT UNIQUE,
        kind TEXT NOT NULL DEFAULT 'alert',
        check_name TEXT,
        fallback_of INTEGER
    );
    CREATE INDEX outbox_due ON outbox(not_before) WHERE state IN ('pending', 'sending');

    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY,
        received REAL NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        allowed INTEGER NOT NULL DEFAULT 0,
        handled INTEGER NOT NULL DEFAULT 0,
        reply TEXT
    );

    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL NOT NULL,
        remote_addr TEXT
    );

    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );

    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        label TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        last_used REAL,
        revoked REAL
    );

    CREATE TABLE login_attempts (
        remote_addr TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX login_attempts_by_addr ON login_attempts(remote_addr, at);

    CREATE TABLE modem_log (
        at REAL NOT NULL,
        connected INTEGER NOT NULL,
        signal_dbm INTEGER,
        registration TEXT,
        operator TEXT,
        error TEXT
    );
    CREATE INDEX modem_log_at ON modem_log(at);
    """,
    # v2: the SIM's message storage fill, so `hbgw status` (another process) sees a full SIM
    """
    ALTER TABLE modem_log ADD COLUMN storage_used INTEGER;
    ALTER TABLE modem_log ADD COLUMN storage_total INTEGER;
    """,
    # v3: the recovery ladder's step, so `hbgw status` shows "radio cycle (step 2 of 5)"
    """
    ALTER TABLE modem_log ADD COLUMN recovery TEXT;
    """,
    # v4: the escalation ladder's steps taken in this outage, and who acknowledged it when
    """
    ALTER TABLE checks ADD COLUMN ladder_step INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE checks ADD COLUMN acked_by TEXT;
    ALTER TABLE checks ADD COLUMN acked_at REAL;
    """,
    # v5: delivery reports per SMS part ({"<ref>": "delivered"|"pending"|"failed"}), when the
    # last part was delivered, and the network's words for the last report
    """
    ALTER TABLE outbox ADD COLUMN delivery TEXT;
    ALTER TABLE outbox ADD COLUMN delivered_at REAL;
    ALTER TABLE outbox ADD COLUMN delivery_note TEXT;
    """,
    # v6: the escalation ladder a check follows (NULL: the default one)
    """
    ALTER TABLE checks ADD COLUMN ladder TEXT;
    """,
    # v7: what Healthchecks keeps per check (slug URLs, tags, description, manual resume, POST
    # only), run durations (?rid=), read-only API keys, and counters that outlive pruned rows
    # and removed checks. slugify() is registered on the writer connection (rules.slugs).
    """
    ALTER TABLE checks ADD COLUMN slug TEXT NOT NULL DEFAULT '';
    ALTER TABLE checks ADD COLUMN tags TEXT NOT NULL DEFAULT '';
    ALTER TABLE checks ADD COLUMN description TEXT NOT NULL DEFAULT '';
    ALTER TABLE checks ADD COLUMN manual_resume INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE checks ADD COLUMN methods TEXT NOT NULL DEFAULT '';
    ALTER TABLE checks ADD COLUMN last_duration REAL;
    ALTER TABLE checks ADD COLUMN last_start_rid TEXT;
    UPDATE checks SET slug = slugify(name);
    CREATE INDEX checks_slug ON checks(slug) WHERE slug != '';
    ALTER TABLE pings ADD COLUMN rid TEXT;
    ALTER TABLE pings ADD COLUMN duration REAL;
    ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'write';
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
    # v8: relayed messages (the box as the house's SMS gateway): who asked for each one, so a
    # sender's hourly share can be counted, and an index to count the last hour's quickly
    """
    ALTER TABLE outbox ADD COLUMN origin TEXT;
    CREATE INDEX outbox_relayed ON outbox(created) WHERE kind = 'relay';
    """,
    # v9: maintenance windows (gateway.rules.maintenance): one-off (start, end) or recurring
    # (cron, tz, duration); scope 'all', 'tag:NAME' or 'checks:ID,ID'. And a snooze that the
    # first good ping ends (snooze_until_up, with muted_until as the snooze's end); whether the
    # owner heard of the current outage (outage_told: an UP follows only a DOWN someone got).
    """
    CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,
        start REAL,
        "end" REAL,
        cron TEXT,
        tz TEXT NOT NULL DEFAULT 'UTC',
        duration REAL,
        created REAL NOT NULL,
        ended_early REAL
    );
    ALTER TABLE checks ADD COLUMN snooze_until_up INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE checks ADD COLUMN outage_told INTEGER NOT NULL DEFAULT 1;
    """,
    # v10: check dependencies (gateway.rules.dependencies): a row per (child, parent); removing
    # either check removes the row. Looked up by child (its decision) and by parent (its
    # messages and its recovery).
    """
    CREATE TABLE check_parents (
        child_id INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
        parent_id INTEGER NOT NULL REFERENCES checks(id) ON DELETE CASCADE,
        PRIMARY KEY (child_id, parent_id)
    ) WITHOUT ROWID;
    CREATE INDEX check_parents_by_parent ON check_parents(parent_id, child_id);
    """,
]


SCHEMA_VERSION = len(MIGRATIONS)
