-- An order's payments one by one (the admin's order page lists them, docs/ADMIN.md):
-- before this an order kept only its last processor reference and the sum refunded.
--
-- Every answer of the payment adapter about an order: authorisations (declines too),
-- saving the card for its subscriptions, captures, voids and refunds, with the
-- processor's message and who asked.
CREATE TABLE payment_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id BIGINT NOT NULL REFERENCES orders(id),
    operation TEXT NOT NULL CHECK (operation IN ('authorize', 'save', 'capture', 'void', 'refund')),
    amount_minor BIGINT,
    outcome TEXT NOT NULL CHECK (outcome IN ('approved', 'pending', 'declined', 'unavailable')),
    message TEXT,
    processor_reference TEXT,
    actor TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX payment_attempts_order ON payment_attempts (order_id, id);

-- Each refund as it was added to `orders.refunded_minor` (in the same transaction), by
-- whom and why.
CREATE TABLE order_refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id BIGINT NOT NULL REFERENCES orders(id),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    reason TEXT,
    actor TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX order_refunds_order ON order_refunds (order_id, id);

-- A declined payment reopens the cart and the next checkout makes another order from it:
-- an order's page lists the attempts of every order of its cart.
CREATE INDEX orders_cart ON orders (cart_id);
