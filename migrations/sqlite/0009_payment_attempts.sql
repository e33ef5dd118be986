-- A payment attempt in flight: the processor's token (encrypted like the order's
-- identity) and when the attempt began. The payment reconciler completes (or voids) an
-- order whose attempt a crash interrupted: it authorises again with the same
-- idempotency key, so the processor answers the first authorisation, never a second.
-- Cleared once the order is paid or cancelled.
ALTER TABLE orders ADD COLUMN payment_token_enc TEXT;
ALTER TABLE orders ADD COLUMN payment_attempted_at TEXT;
CREATE INDEX orders_payment_attempts ON orders (status, payment_attempted_at);
