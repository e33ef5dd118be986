-- Loyalty: an append-only points ledger per customer. The balance is derived from it:
-- entries whose `available_at` has come are spendable, the rest are pending (points of
-- an order wait out the merchant's pending period). Nothing is updated or deleted: a
-- refund, a cancellation, a spend, an expiry or a staff correction is an entry of its own.
CREATE TABLE loyalty_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    points BIGINT NOT NULL,
    -- earned (a rule's credit), adjusted (staff), spent (checkout), restored (a spend
    -- given back), reversed (a refund or cancellation), expired.
    kind TEXT NOT NULL CHECK (kind IN ('earned', 'adjusted', 'spent', 'restored', 'reversed', 'expired')),
    reason TEXT NOT NULL,
    -- What caused it (`event:<outbox id>`, `order:<number>`, `staff:<id>`, ...) and which
    -- rule (a plugin id, or `checkout`, `staff`, `kernel`): a redelivered event credits once.
    source TEXT NOT NULL,
    rule TEXT NOT NULL,
    seq BIGINT NOT NULL DEFAULT 0,
    order_id BIGINT REFERENCES orders(id),
    available_at TEXT NOT NULL,
    actor TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (customer_id, source, rule, seq)
);
CREATE INDEX loyalty_ledger_customer ON loyalty_ledger (customer_id, id);
CREATE INDEX loyalty_ledger_order ON loyalty_ledger (order_id);

-- One row per customer with a ledger: spending locks it (two checkouts of one customer
-- spend one after the other), and expiry reads when points were last earned by an order.
CREATE TABLE loyalty_accounts (
    customer_id BIGINT PRIMARY KEY REFERENCES customers(id),
    last_order_at TEXT,
    updated_at TEXT NOT NULL
);

ALTER TABLE orders ADD COLUMN points_redeemed BIGINT NOT NULL DEFAULT 0;
