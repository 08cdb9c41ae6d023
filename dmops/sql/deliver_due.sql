-- What dmops deliver hands over at the clock (SPEC §11), in send_after then message_id order: the outbox
-- messages ($files, kept as _dm_outbox) joined with their latest delivery state (delivery_states), their
-- purpose (the ledger's entries) and the suppressions in force now (suppressions_all) matched on the
-- message's address and on every address of the contact (contact_channels). Needs _dm_routes (channel,
-- transport, max_age_seconds). action: send | expire (retried for longer than the transport's max_age) |
-- suppress (a suppression matches: never handed over).
CREATE OR REPLACE TEMP TABLE _dm_outbox AS
SELECT json AS line,
       json_extract_string(json, '$.message_id') AS message_id,
       json_extract_string(json, '$.campaign_id') AS campaign_id,
       json_extract_string(json, '$.contact_id') AS contact_id,
       json_extract_string(json, '$.channel') AS channel,
       json_extract_string(json, '$.to') AS "to",
       CAST(json_extract_string(json, '$.send_after') AS TIMESTAMPTZ) AS send_after
FROM read_json_objects($files, format = 'newline_delimited');

CREATE OR REPLACE TEMP TABLE _dm_candidates AS
SELECT o.*, timezone('UTC', o.send_after) AS send_after_utc, coalesce(d.state, 'queued') AS state,
       coalesce(d.attempts, 0) AS attempts, d.retry_at, d.first_attempt, r.transport, r.max_age_seconds,
       coalesce(e.purpose, 'marketing') AS purpose
FROM _dm_outbox o
LEFT JOIN delivery_states d ON d.message_id = o.message_id
LEFT JOIN _dm_routes r ON r.channel = o.channel
LEFT JOIN (SELECT DISTINCT message_id, purpose FROM ledger_entries WHERE kind = 'message') e
       ON e.message_id = o.message_id
WHERE o.send_after <= $at_tz
  AND (coalesce(d.state, 'queued') = 'queued'
       OR (d.state = 'deferred' AND coalesce(d.retry_at, d."at") <= $at)
       OR (d.state = 'in_doubt' AND $resend));

CREATE OR REPLACE TEMP TABLE _dm_suppressed_messages AS
WITH applicable AS (SELECT * FROM suppressions_all)
SELECT c.message_id FROM _dm_candidates c JOIN applicable s ON s.contact_id = c.contact_id
    AND (s.channel IS NULL OR s.channel = c.channel) AND (c.purpose = 'marketing' OR s.reason <> 'unsubscribe')
UNION
SELECT c.message_id FROM _dm_candidates c JOIN applicable s ON c.channel = 'email' AND s.email_key = lower(trim(c."to"))
    AND (s.channel IS NULL OR s.channel = c.channel) AND (c.purpose = 'marketing' OR s.reason <> 'unsubscribe')
UNION
SELECT c.message_id FROM _dm_candidates c JOIN applicable s ON c.channel = 'sms' AND s.phone_key = c."to"
    AND (s.channel IS NULL OR s.channel = c.channel) AND (c.purpose = 'marketing' OR s.reason <> 'unsubscribe')
UNION
SELECT c.message_id FROM _dm_candidates c JOIN applicable s ON c.channel = 'dm' AND s.dm_key = c."to"
    AND (s.channel IS NULL OR s.channel = c.channel) AND (c.purpose = 'marketing' OR s.reason <> 'unsubscribe')
UNION  -- the contact's other addresses, as the contacts file has them now (a row binds every address, SPEC §5)
SELECT c.message_id FROM _dm_candidates c JOIN contact_channels cc ON cc.contact_id = c.contact_id
    JOIN applicable s ON (s.email_key = cc.email_key OR s.phone_key = cc.phone OR s.dm_key = cc.dm_handle)
    AND (s.channel IS NULL OR s.channel = c.channel) AND (c.purpose = 'marketing' OR s.reason <> 'unsubscribe');

CREATE OR REPLACE TEMP TABLE deliver_due AS
SELECT c.*,
       CASE WHEN c.message_id IN (SELECT message_id FROM _dm_suppressed_messages) THEN 'suppress'
            WHEN c.state = 'deferred' AND c.max_age_seconds IS NOT NULL
                 AND c.first_attempt + to_seconds(c.max_age_seconds) <= $at THEN 'expire'
            ELSE 'send' END AS action,
       (SELECT count(*) FROM delivery_lines l WHERE l.message_id = c.message_id AND l.state = 'deferred')
           AS deferrals
FROM _dm_candidates c;
