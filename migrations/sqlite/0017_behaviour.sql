-- Behaviour for recommendations, recorded only with the analytics consent, under a
-- random visitor id that is not the customer id and is replaced every 30 days; no IP
-- address, no user agent. Kept 90 days. The link from a signed-in customer to the visitor
-- ids they browsed under lives apart (customer_visitors), so that erasure and a withdrawn
-- consent delete their rows, and the export lists them.
CREATE TABLE behaviour_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    visitor TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('viewed', 'added', 'purchased')),
    product_id BIGINT NOT NULL REFERENCES products(id),
    created_at TEXT NOT NULL
);
CREATE INDEX behaviour_events_visitor ON behaviour_events (visitor, id);
CREATE INDEX behaviour_events_created ON behaviour_events (created_at);

CREATE TABLE customer_visitors (
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    visitor TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, visitor)
);
CREATE INDEX customer_visitors_visitor ON customer_visitors (visitor);

-- What the recommendations job computed: per product, the products most often bought in
-- the same order (kind bought_together) and viewed by the same visitor (viewed_together).
CREATE TABLE product_recommendations (
    product_id BIGINT NOT NULL REFERENCES products(id),
    related_id BIGINT NOT NULL REFERENCES products(id),
    kind TEXT NOT NULL CHECK (kind IN ('bought_together', 'viewed_together')),
    score BIGINT NOT NULL,
    PRIMARY KEY (product_id, kind, related_id)
);

-- Per visitor, how much they looked at each category (views 1, cart additions 3,
-- purchases 5).
CREATE TABLE visitor_affinity (
    visitor TEXT NOT NULL,
    category_id BIGINT NOT NULL REFERENCES categories(id),
    score BIGINT NOT NULL,
    PRIMARY KEY (visitor, category_id)
);
