-- Marketing messages by how many messages of the channel the contact had in the 7 and 30 days before
-- (buckets capped at $top_7d and $top_30d), with how many led to an unsubscribe or a complaint. "Before"
-- follows the cap rule of SPEC §6, |t_m - t| < per: a message exactly 7 days earlier is not within 7 days.
WITH m AS (
    SELECT message_id, channel,
           count(*) OVER (PARTITION BY contact_id, channel ORDER BY planned_at
                          RANGE BETWEEN (INTERVAL 7 DAYS - INTERVAL 1 MICROSECOND) PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) AS prior_7d,
           count(*) OVER (PARTITION BY contact_id, channel ORDER BY planned_at
                          RANGE BETWEEN (INTERVAL 30 DAYS - INTERVAL 1 MICROSECOND) PRECEDING AND INTERVAL 1 MICROSECOND PRECEDING) AS prior_30d
    FROM ledger_entries WHERE kind = 'message' AND purpose = 'marketing'
),
o AS (
    SELECT message_id, bool_or(event = 'unsubscribe') AS u, bool_or(event = 'complaint') AS q
    FROM ledger_events WHERE message_id IS NOT NULL AND event IN ('unsubscribe', 'complaint')
    GROUP BY message_id
),
j AS (SELECT m.*, coalesce(o.u, false) AS u, coalesce(o.q, false) AS q FROM m LEFT JOIN o USING (message_id))
SELECT channel, '7d' AS win, least(prior_7d, $top_7d) AS bucket, count(*), count(*) FILTER (WHERE u),
       count(*) FILTER (WHERE q)
FROM j GROUP BY ALL
UNION ALL
SELECT channel, '30d', least(prior_30d, $top_30d), count(*), count(*) FILTER (WHERE u),
       count(*) FILTER (WHERE q)
FROM j GROUP BY ALL
ORDER BY 1, 2, 3
