-- Privacy: customers' addresses (identity, encrypted), consents (behaviour, history),
-- and privacy requests (GDPR export and erasure) with their status.

-- Addresses. Every personal field is encrypted ('v1:<key id>:<base64>') with the data
-- key, bound to its column ('customer_addresses.<field>'); optional fields are NULL when
-- absent. `id` is random ('adr_…'), so ids cannot be guessed or counted; every query
-- also checks the owner.
CREATE TABLE customer_addresses (
    id TEXT PRIMARY KEY,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    label_enc TEXT,
    name_enc TEXT NOT NULL,
    line1_enc TEXT NOT NULL,
    line2_enc TEXT,
    city_enc TEXT NOT NULL,
    region_enc TEXT,
    postal_code_enc TEXT,
    country_enc TEXT NOT NULL,
    phone_enc TEXT,
    is_default BIGINT NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX customer_addresses_customer ON customer_addresses (customer_id, created_at);
-- At most one default address per customer.
CREATE UNIQUE INDEX customer_addresses_one_default ON customer_addresses (customer_id)
    WHERE is_default = 1;

-- Consents: what a customer agreed to (`purpose`, e.g. marketing_email), under which
-- version of the wording, and when. Append-only history; the current state of a purpose
-- is its newest row. No personal data: the customer is joined by id.
CREATE TABLE customer_consents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    purpose TEXT NOT NULL,
    granted BIGINT NOT NULL CHECK (granted IN (0, 1)),
    wording_version TEXT NOT NULL,
    -- registration | account | erasure
    source TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX customer_consents_customer ON customer_consents (customer_id, purpose, id);

-- GDPR requests. `id` is random and long ('pr_…'): it is the requester's status URL,
-- which works without signing in (an erased customer cannot sign in). The customer is
-- named only by pseudonym; `error` never holds personal data.
CREATE TABLE privacy_requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('export', 'erasure')),
    customer_pseudonym TEXT NOT NULL,
    -- the customer's pseudonym (self-service) or the staff actor
    requested_by TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('received', 'processing', 'completed', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE INDEX privacy_requests_status ON privacy_requests (status, created_at);
CREATE INDEX privacy_requests_customer ON privacy_requests (customer_pseudonym, created_at);
