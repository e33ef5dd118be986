-- Orders. Behaviour (what was bought, totals, state) in plain columns; identity (the
-- email and shipping address) encrypted like customers' ('v1:<key id>:<base64>'), wiped
-- on erasure while the order stays for accounting. `country` stays: tax needs it.
CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    number TEXT NOT NULL UNIQUE,
    customer_id BIGINT REFERENCES customers(id),
    cart_id TEXT NOT NULL,
    -- The checkout's Idempotency-Key: the same key never makes a second order.
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'fulfilled', 'delivered', 'cancelled', 'refunded')),
    currency TEXT NOT NULL,
    subtotal_minor BIGINT NOT NULL,
    adjustments_minor BIGINT NOT NULL,
    shipping_minor BIGINT NOT NULL,
    tax_minor BIGINT NOT NULL,
    total_minor BIGINT NOT NULL,
    shipping_method TEXT NOT NULL,
    country TEXT NOT NULL,
    email_enc TEXT NOT NULL,
    shipping_address_enc TEXT NOT NULL,
    tracking_number TEXT,
    -- The processor's reference of the payment (from the payment adapter), and what of
    -- it has been refunded.
    payment_reference TEXT,
    refunded_minor BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id);

CREATE TABLE order_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id BIGINT NOT NULL REFERENCES orders(id),
    variant_id BIGINT NOT NULL REFERENCES variants(id),
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    subscription INTEGER NOT NULL CHECK (subscription IN (0, 1)),
    unit_price_minor BIGINT NOT NULL,
    adjustments_minor BIGINT NOT NULL,
    total_minor BIGINT NOT NULL,
    -- The pricing rules' adjustments with their reasons, as the shopper saw them.
    adjustments TEXT NOT NULL
);
CREATE INDEX order_lines_order ON order_lines (order_id);

-- Which lots an order's units came from (first expired, first out); released on cancel.
CREATE TABLE order_allocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id BIGINT NOT NULL REFERENCES orders(id),
    lot_id BIGINT NOT NULL REFERENCES lots(id),
    variant_id BIGINT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0)
);
CREATE INDEX order_allocations_order ON order_allocations (order_id);

-- Merchant-set shipping rates: by destination country ('*' for anywhere else) and
-- the parcel's weight.
CREATE TABLE shipping_rates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    max_weight_grams BIGINT NOT NULL CHECK (max_weight_grams > 0),
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL,
    UNIQUE (code, country, max_weight_grams)
);

-- Merchant-set tax rates by destination country ('*' for anywhere else), in basis
-- points (2100 = 21%), charged on the discounted goods and the shipping.
CREATE TABLE tax_rates (
    country TEXT PRIMARY KEY,
    rate_bp BIGINT NOT NULL CHECK (rate_bp >= 0 AND rate_bp <= 10000)
);
