-- Every marketing message with how many messages of the channel the contact had in the 7 and 30 days
-- before it, and whether it led to an unsubscribe or a complaint. "Before" follows the cap rule of
-- SPEC §6, |t_m - t| < per: a message exactly 7 days earlier is not within 7 days (the frames are in
-- microseconds, 7 days less one and 30 days less one, literals both DuckDB and Spark take). The buckets
-- (fatigue_buckets.sql) and the replay of a suggested cap (report/fatigue.py) read this one table.
CREATE OR REPLACE TEMP TABLE _dm_fatigue AS
WITH m AS (
    SELECT message_id, contact_id, channel, planned_at,
           count(*) OVER (PARTITION BY contact_id, channel ORDER BY epoch_us(planned_at)
                          RANGE BETWEEN 604799999999 PRECEDING AND 1 PRECEDING) AS prior_7d,
           count(*) OVER (PARTITION BY contact_id, channel ORDER BY epoch_us(planned_at)
                          RANGE BETWEEN 2591999999999 PRECEDING AND 1 PRECEDING) AS prior_30d
    FROM ledger_entries WHERE kind = 'message' AND purpose = 'marketing'
),
o AS (
    SELECT message_id, bool_or(event = 'unsubscribe') AS u, bool_or(event = 'complaint') AS q
    FROM ledger_events WHERE message_id IS NOT NULL AND event IN ('unsubscribe', 'complaint')
    GROUP BY message_id
)
SELECT m.*, coalesce(o.u, false) AS u, coalesce(o.q, false) AS q FROM m LEFT JOIN o USING (message_id)
