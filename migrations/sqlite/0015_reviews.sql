-- Product reviews by customers who bought the product: one per customer and product,
-- waiting for moderation until staff publish or reject them. `author_name` is what the
-- product page shows (first name and initial, as the customer chose when writing);
-- erasure clears it (and, unless the shop keeps reviews of erased customers, the review).
CREATE TABLE reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id BIGINT NOT NULL REFERENCES products(id),
    customer_id BIGINT REFERENCES customers(id),
    rating BIGINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    author_name TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'published', 'rejected')),
    moderated_by TEXT,
    moderated_at TEXT,
    reject_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (product_id, customer_id)
);
CREATE INDEX reviews_product ON reviews (product_id, status, id);
CREATE INDEX reviews_status ON reviews (status, id);
CREATE INDEX reviews_customer ON reviews (customer_id);
