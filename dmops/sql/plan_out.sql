-- `dmops plan --out`: one row per audience contact. An empty reason or variant is $empty:
-- NULL in CSV (an empty field), '' in Parquet.
SELECT contact_id,
       CASE WHEN variant IS NULL THEN 'excluded' ELSE 'send' END AS decision,
       coalesce(reason, $empty) AS reason,
       coalesce(variant, $empty) AS variant,
       strftime(planned_at, '%Y-%m-%dT%H:%M:%SZ') AS send_after
FROM plan_rows ORDER BY contact_id
