-- Subscriptions: recurring orders a customer set up at checkout. Behaviour (items, the
-- interval, the dates, the state) in plain columns; identity (the email and shipping
-- address, copied from the order that started it, under the orders' encryption contexts
-- so each renewal order is written with them as they are) and the processor's reusable
-- payment method encrypted.
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL UNIQUE,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    origin_order_id BIGINT NOT NULL REFERENCES orders(id),
    status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'cancelled')),
    interval_count BIGINT NOT NULL CHECK (interval_count > 0),
    interval_unit TEXT NOT NULL CHECK (interval_unit IN ('day', 'week', 'month')),
    -- The cycle the next renewal makes (the order that started it was cycle 0), and when.
    cycle BIGINT NOT NULL,
    next_renewal_at TEXT NOT NULL,
    skip_next INTEGER NOT NULL DEFAULT 0 CHECK (skip_next IN (0, 1)),
    -- Paused until this time (then active again), or indefinitely when NULL.
    paused_until TEXT,
    currency TEXT NOT NULL,
    shipping_method TEXT NOT NULL,
    country TEXT NOT NULL,
    email_enc TEXT,
    shipping_address_enc TEXT,
    payment_method_enc TEXT,
    -- Dunning: declines since it last renewed (or was resumed), when the first was, when
    -- the next attempt runs.
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    -- Attempts made at this cycle (declined ones, and one in flight); numbers the next.
    cycle_attempts BIGINT NOT NULL DEFAULT 0,
    first_failed_at TEXT,
    retry_at TEXT,
    -- The cycle a `subscription.renewal_upcoming` was last recorded for.
    notified_cycle BIGINT NOT NULL DEFAULT 0,
    cancel_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX subscriptions_due ON subscriptions (status, next_renewal_at);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

CREATE TABLE subscription_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions(id),
    variant_id BIGINT NOT NULL REFERENCES variants(id),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    UNIQUE (subscription_id, variant_id)
);

-- Every attempt at every cycle, with what came of it. One cycle is paid at most once,
-- whatever runs twice: the database refuses a second paid attempt.
CREATE TABLE subscription_renewals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id BIGINT NOT NULL REFERENCES subscriptions(id),
    cycle BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    order_id BIGINT REFERENCES orders(id),
    outcome TEXT NOT NULL CHECK (outcome IN ('placed', 'paid', 'declined', 'skipped', 'out_of_stock')),
    message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (subscription_id, cycle, attempt)
);
CREATE UNIQUE INDEX subscription_renewals_paid_once ON subscription_renewals (subscription_id, cycle)
    WHERE outcome = 'paid';

-- The interval a subscription line was bought at ('30d', '2w', '1m'), and the choices a
-- product offers; a renewal order names its subscription and cycle.
ALTER TABLE products ADD COLUMN subscription_intervals TEXT NOT NULL DEFAULT '30d,60d,90d';
ALTER TABLE cart_lines ADD COLUMN subscription_interval TEXT;
ALTER TABLE order_lines ADD COLUMN subscription_interval TEXT;
ALTER TABLE orders ADD COLUMN subscription_id BIGINT REFERENCES subscriptions(id);
ALTER TABLE orders ADD COLUMN renewal_cycle BIGINT;
