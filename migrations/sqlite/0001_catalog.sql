-- Catalog, stock lots, settings and the transactional outbox.
-- Dates are 'YYYY-MM-DD' text and timestamps RFC 3339 UTC text: both sort as strings.

CREATE TABLE categories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    parent_id BIGINT REFERENCES categories(id),
    position BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE products (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    product_type TEXT NOT NULL CHECK (product_type IN ('supplement', 'skincare', 'bundle')),
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('draft', 'active', 'archived')),
    attributes TEXT NOT NULL DEFAULT '{}',
    version BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX products_status_name ON products (status, name);

CREATE TABLE product_categories (
    product_id BIGINT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    category_id BIGINT NOT NULL REFERENCES categories(id),
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX product_categories_category ON product_categories (category_id);

CREATE TABLE product_tags (
    product_id BIGINT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (product_id, tag)
);
CREATE INDEX product_tags_tag ON product_tags (tag);

CREATE TABLE variants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id BIGINT NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    sku TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    weight_grams BIGINT NOT NULL CHECK (weight_grams >= 0),
    position BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX variants_product ON variants (product_id, position);

CREATE TABLE bundle_components (
    bundle_variant_id BIGINT NOT NULL REFERENCES variants(id) ON DELETE CASCADE,
    component_variant_id BIGINT NOT NULL REFERENCES variants(id),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (bundle_variant_id, component_variant_id),
    CHECK (bundle_variant_id <> component_variant_id)
);
CREATE INDEX bundle_components_component ON bundle_components (component_variant_id);

CREATE TABLE locations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE lots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    variant_id BIGINT NOT NULL REFERENCES variants(id),
    location_id BIGINT NOT NULL REFERENCES locations(id),
    batch TEXT NOT NULL,
    manufactured_on TEXT NOT NULL,
    expires_on TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (variant_id, location_id, batch),
    CHECK (expires_on > manufactured_on)
);
CREATE INDEX lots_variant_expiry ON lots (variant_id, expires_on);

-- Every change of a lot's quantity: what, why, who. Append-only by convention; the
-- inventory module is the only writer of lots.quantity and always writes here too.
CREATE TABLE stock_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lot_id BIGINT NOT NULL REFERENCES lots(id),
    variant_id BIGINT NOT NULL REFERENCES variants(id),
    delta BIGINT NOT NULL,
    quantity_after BIGINT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT,
    reference TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX stock_ledger_variant ON stock_ledger (variant_id, id);
CREATE INDEX stock_ledger_lot ON stock_ledger (lot_id, id);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    dispatched_at TEXT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE dispatched_at IS NULL;
