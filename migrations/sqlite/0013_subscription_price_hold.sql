-- The renewal price `subscription.renewal_upcoming` announced, for its cycle: that
-- renewal never charges more (a price rise after the notice waits for the next cycle).
-- A change by the shopper clears it (the change's answer shows the new price).
ALTER TABLE subscriptions ADD COLUMN announced_cycle BIGINT NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN announced_total_minor BIGINT;
