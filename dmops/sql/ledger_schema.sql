-- The ledger's tables (see dmops/ledger.py); run on every open: it creates what is missing.
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    campaign_id VARCHAR NOT NULL,
    occurrence  VARCHAR NOT NULL,
    contact_id  VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,      -- 'message' | 'holdout'
    channel     VARCHAR NOT NULL,      -- 'email' | 'sms' | 'dm'
    purpose     VARCHAR NOT NULL,      -- 'marketing' | 'transactional'
    variant     VARCHAR,               -- NULL for holdout
    planned_at  TIMESTAMP NOT NULL,    -- planned send time t, UTC
    message_id  VARCHAR,               -- messages only
    run_id      VARCHAR,
    recorded_at TIMESTAMP,             -- UTC
    address_sha256 VARCHAR             -- SHA-256 of the normalised address (addresses.address_key_sql)
);
-- Ledgers written before schema version 2 lack the address: their messages are matched by contact only.
ALTER TABLE entries ADD COLUMN IF NOT EXISTS address_sha256 VARCHAR;
CREATE TABLE IF NOT EXISTS runs (
    campaign_id VARCHAR NOT NULL,
    occurrence  VARCHAR NOT NULL,
    run         VARCHAR NOT NULL,      -- outbox folder name, e.g. run-0001
    count       BIGINT NOT NULL,
    sha256      VARCHAR NOT NULL,
    recorded_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS decisions (  -- the plan's funnel at each send: how many contacts got each decision
    campaign_id VARCHAR NOT NULL,
    occurrence  VARCHAR NOT NULL,
    reason      VARCHAR NOT NULL,      -- a reason of SPEC §6, or 'send'
    contacts    BIGINT NOT NULL,
    recorded_at TIMESTAMP NOT NULL     -- UTC; a report reads each occurrence's latest send
);
CREATE TABLE IF NOT EXISTS events (
    event_key   UHUGEINT NOT NULL,     -- deduplication: ledger.event_key_sql (MD5 of the event_id, else of the row)
    event       VARCHAR NOT NULL,      -- delivered | bounce | open | click | unsubscribe | complaint | conversion
    ts          TIMESTAMP NOT NULL,    -- UTC
    message_id  VARCHAR,
    contact_id  VARCHAR,
    campaign_id VARCHAR,               -- from the message, when there is one
    revenue     DOUBLE NOT NULL,
    bounce_type VARCHAR,               -- hard | soft, bounces only
    url         VARCHAR,
    source      VARCHAR NOT NULL,      -- the imported file's name
    imported_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS message_events (  -- per message, what its events say: kept at import for reports
    message_id   VARCHAR PRIMARY KEY,
    campaign_id  VARCHAR,
    bounced      BOOLEAN NOT NULL,      -- any bounce, hard or soft
    opened       BOOLEAN NOT NULL,
    clicked      BOOLEAN NOT NULL,
    unsubscribed BOOLEAN NOT NULL,
    complained   BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS suppressions (
    contact_id VARCHAR,
    address    VARCHAR,
    channel    VARCHAR,                -- NULL: every channel
    reason     VARCHAR NOT NULL,       -- unsubscribe | bounce | complaint | manual | erasure
    ts         TIMESTAMP,              -- UTC
    source     VARCHAR NOT NULL        -- e.g. events:<file>, erasure
);
CREATE TABLE IF NOT EXISTS erasures (     -- tombstones of erased people (dmops forget): never the value itself
    subject    VARCHAR PRIMARY KEY,    -- hex HMAC-SHA256 under the workspace secret of contact_id:<id>,
                                       -- email:<address>, phone:<E.164> or dm:<handle>
    erased_at  TIMESTAMP NOT NULL      -- UTC
);
CREATE TABLE IF NOT EXISTS erasure_log (  -- one line per person erased: no personal data
    erased_at    TIMESTAMP NOT NULL,   -- UTC
    pseudonym    VARCHAR NOT NULL,     -- what their contact id became in entries and events
    entries      BIGINT NOT NULL,      -- ledger rows about them (all of the erasure's people)
    events       BIGINT NOT NULL,
    outbox_lines BIGINT NOT NULL,
    reason       VARCHAR
);
