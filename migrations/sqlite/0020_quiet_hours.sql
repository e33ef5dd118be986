-- Quiet hours: a window of the customer's own day in which push notifications wait
-- (email is read when the customer chooses, so it is not held). `starts` and `ends` are
-- local times 'HH:MM' in `time_zone` (an IANA name); a window may run past midnight.
CREATE TABLE notification_quiet_hours (
    customer_id BIGINT PRIMARY KEY REFERENCES customers(id),
    starts TEXT NOT NULL,
    ends TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- When a held notification will be delivered (the end of the recipient's quiet hours).
ALTER TABLE notifications ADD COLUMN held_until TEXT;
