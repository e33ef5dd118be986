-- Carts: a guest's is reached by its unguessable id; a signed-in customer's is bound to
-- them (and only their token reaches it). A customer has at most one open cart.
CREATE TABLE carts (
    id TEXT PRIMARY KEY,
    customer_id BIGINT REFERENCES customers(id),
    status TEXT NOT NULL CHECK (status IN ('open', 'merged', 'ordered')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX carts_one_open_per_customer ON carts (customer_id)
    WHERE status = 'open' AND customer_id IS NOT NULL;

-- One line per variant and purchase kind (once, or on subscription).
CREATE TABLE cart_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cart_id TEXT NOT NULL REFERENCES carts(id),
    variant_id BIGINT NOT NULL REFERENCES variants(id),
    subscription INTEGER NOT NULL CHECK (subscription IN (0, 1)),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    added_at TEXT NOT NULL,
    UNIQUE (cart_id, variant_id, subscription)
);
