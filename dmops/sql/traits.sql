-- Computed traits of every contact id in `contacts` as of $at (see dmops/traits.py for each trait's
-- definition). Durations are microseconds: $day_us, and the lifecycle windows $new_us, $active_us, $churned_us.
WITH conv AS (
    SELECT contact_id, ts, revenue, epoch_us(ts) - epoch_us(lag(ts) OVER (PARTITION BY contact_id ORDER BY ts)) AS gap
    FROM ledger_events
    WHERE event = 'conversion' AND contact_id IS NOT NULL AND ts <= $at
),
agg AS (
    SELECT contact_id, min(ts) AS first_conversion_at, max(ts) AS last_conversion_at,
           count(*) FILTER (WHERE epoch_us($at) - epoch_us(ts) <= 90 * $day_us) AS conversions_90d,
           count(*) FILTER (WHERE epoch_us($at) - epoch_us(ts) <= 365 * $day_us) AS conversions_365d,
           coalesce(sum(revenue) FILTER (WHERE epoch_us($at) - epoch_us(ts) <= 365 * $day_us), 0) AS revenue_365d,
           max(ts) FILTER (WHERE gap > $churned_us) AS reactivated_at
    FROM conv GROUP BY contact_id
),
aged AS (
    SELECT *, (epoch_us($at) - epoch_us(last_conversion_at)) // $day_us AS recency_days FROM agg
),
scored AS (
    SELECT contact_id,
           1 + (5 * (rank() OVER (ORDER BY recency_days DESC) - 1)) // count(*) OVER () AS r_score,
           1 + (5 * (rank() OVER (ORDER BY conversions_365d) - 1)) // count(*) OVER () AS f_score,
           1 + (5 * (rank() OVER (ORDER BY revenue_365d) - 1)) // count(*) OVER () AS m_score
    FROM aged WHERE conversions_365d > 0
),
opens AS (
    SELECT contact_id, max(ts) AS last_open_at FROM ledger_events
    WHERE event = 'open' AND contact_id IS NOT NULL AND ts <= $at GROUP BY contact_id
),
messages AS (
    SELECT contact_id, count(*) AS messages_30d FROM ledger_entries
    WHERE kind = 'message' AND purpose = 'marketing' AND planned_at <= $at
      AND epoch_us($at) - epoch_us(planned_at) <= 30 * $day_us
    GROUP BY contact_id
)
SELECT c.contact_id, a.first_conversion_at, a.last_conversion_at,
       coalesce(a.conversions_90d, 0) AS conversions_90d, coalesce(a.conversions_365d, 0) AS conversions_365d,
       CAST(coalesce(a.revenue_365d, 0) AS DOUBLE) AS revenue_365d, CAST(a.recency_days AS BIGINT) AS recency_days,
       CAST(s.r_score AS BIGINT) AS r_score, CAST(s.f_score AS BIGINT) AS f_score, CAST(s.m_score AS BIGINT) AS m_score,
       CASE WHEN a.contact_id IS NULL THEN 'prospect'
            WHEN epoch_us($at) - epoch_us(a.first_conversion_at) <= $new_us THEN 'new'
            WHEN epoch_us($at) - epoch_us(a.last_conversion_at) <= $active_us
                 AND epoch_us($at) - epoch_us(a.reactivated_at) <= $active_us THEN 'reactivated'
            WHEN epoch_us($at) - epoch_us(a.last_conversion_at) <= $active_us THEN 'active'
            WHEN epoch_us($at) - epoch_us(a.last_conversion_at) <= $churned_us THEN 'at_risk'
            ELSE 'churned' END AS lifecycle_stage,
       coalesce(m.messages_30d, 0) AS messages_30d, o.last_open_at
FROM (SELECT DISTINCT contact_id FROM contacts) c
LEFT JOIN aged a USING (contact_id) LEFT JOIN scored s USING (contact_id)
LEFT JOIN opens o USING (contact_id) LEFT JOIN messages m USING (contact_id)
