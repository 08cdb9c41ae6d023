-- Per variant (and the holdout) of campaign $c, occurrence $occ (NULL: all), and period (NULL unless $unit is
-- month or quarter of the planned send time in zone $tz): recipients and the counts behind SPEC §9's metrics.
-- A conversion counts when it falls in (t, t + $window seconds], t the contact's planned send time.
-- Revenue is summed as DECIMAL (to 1/10,000 of the currency unit), its squares too: exact sums, the same on
-- every engine in any order (kpis computes the standard deviation from them).
WITH r AS (
    SELECT kind, coalesce(variant, 'holdout') AS grp, contact_id, occurrence, planned_at, message_id,
           CASE WHEN $unit IS NOT NULL
                THEN date_trunc($unit, timezone('UTC', planned_at) AT TIME ZONE $tz) END AS period
    FROM ledger_entries WHERE campaign_id = $c AND ($occ IS NULL OR occurrence = $occ)
),
f AS (  -- what each message's events say, folded at import (ledger.message_events)
    SELECT message_id, bounced AS b, opened AS o, clicked AS k, unsubscribed AS u, complained AS q
    FROM ledger_message_events WHERE campaign_id = $c
),
conv AS (
    SELECT r.contact_id, r.occurrence, r.kind, sum(CAST(ev.revenue AS DECIMAL(18, 4))) AS revenue
    FROM r JOIN ledger_events ev
      ON ev.event = 'conversion' AND ev.contact_id = r.contact_id
     AND epoch_us(ev.ts) > epoch_us(r.planned_at) AND epoch_us(ev.ts) <= epoch_us(r.planned_at) + CAST($window AS BIGINT) * 1000000
    GROUP BY r.contact_id, r.occurrence, r.kind
),
per AS (
    SELECT r.grp, r.period, r.kind, coalesce(f.b, false) AND NOT coalesce(f.o, false) AND NOT coalesce(f.k, false) AS bounced,
           coalesce(f.o, false) AS opened, coalesce(f.k, false) AS clicked, coalesce(f.u, false) AS unsub,
           coalesce(f.q, false) AS complained, c.revenue IS NOT NULL AS converted,
           CAST(coalesce(c.revenue, 0) AS DECIMAL(18, 4)) AS revenue
    FROM r LEFT JOIN f USING (message_id) LEFT JOIN conv c USING (contact_id, occurrence, kind)
)
SELECT grp, period, count(*) AS recipients, count(*) FILTER (WHERE kind = 'message') AS sent,
       count(*) FILTER (WHERE bounced) AS bounced, count(*) FILTER (WHERE opened) AS opened,
       count(*) FILTER (WHERE clicked) AS clicked, count(*) FILTER (WHERE unsub) AS unsubscribed,
       count(*) FILTER (WHERE complained) AS complained, count(*) FILTER (WHERE converted) AS conversions,
       sum(revenue) AS revenue, sum(revenue * revenue) AS revenue_sq
FROM per GROUP BY grp, period
