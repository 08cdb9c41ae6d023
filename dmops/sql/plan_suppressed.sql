-- Audience contacts (_dm_base) that a suppression applying to this plan matches: by contact id, or by a
-- normalised email, phone or DM handle. An unsubscribe binds only marketing ($marketing); a suppression
-- without a channel binds every channel.
CREATE OR REPLACE TEMP TABLE _dm_suppressed AS
WITH applicable AS (
    SELECT * FROM suppressions_all
    WHERE (channel IS NULL OR channel = $channel) AND ($marketing OR reason <> 'unsubscribe')
)
SELECT b.contact_id FROM _dm_base b JOIN applicable s ON s.contact_id = b.contact_id
UNION
SELECT b.contact_id FROM _dm_base b JOIN applicable s ON s.email_key = b.email_key
UNION
SELECT b.contact_id FROM _dm_base b JOIN applicable s ON s.phone_key = b.phone_key
UNION
SELECT b.contact_id FROM _dm_base b JOIN applicable s ON s.dm_key = b.dm_key
