-- The messages of _dm_fatigue (fatigue.sql) by channel, window and prior count (buckets capped at
-- $top_7d and $top_30d), with how many led to an unsubscribe or a complaint.
SELECT channel, '7d' AS win, least(prior_7d, $top_7d) AS bucket, count(*), count(*) FILTER (WHERE u),
       count(*) FILTER (WHERE q)
FROM _dm_fatigue GROUP BY ALL
UNION ALL
SELECT channel, '30d', least(prior_30d, $top_30d), count(*), count(*) FILTER (WHERE u),
       count(*) FILTER (WHERE q)
FROM _dm_fatigue GROUP BY ALL
ORDER BY 1, 2, 3
