-- Customer accounts: wrapped keys, customers with encrypted identity, sessions.

-- Keys, each stored wrapped (AES-256-GCM) under the master key from configuration:
-- purpose 'data' encrypts identity fields, 'lookup' keys the email hash used to find
-- an account at sign-in, 'jwt' signs access tokens (HS256, `id` is the token's kid).
CREATE TABLE account_keys (
    id TEXT PRIMARY KEY,
    purpose TEXT NOT NULL CHECK (purpose IN ('data', 'lookup', 'jwt')),
    wrapped TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Customers. Identity (email, name) is encrypted ('v1:<key id>:<base64>'); the account
-- is found by a keyed hash of the normalised email, and is referred to everywhere else
-- (audit log, later orders) by its random pseudonym.
CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pseudonym TEXT NOT NULL UNIQUE,
    email_lookup TEXT NOT NULL UNIQUE,
    email_enc TEXT NOT NULL,
    name_enc TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    erased_at TEXT
);

-- A sign-in starts a session: a family of refresh tokens, each usable once. Presenting
-- a used token revokes the session (and so every token of the family).
CREATE TABLE customer_sessions (
    id TEXT PRIMARY KEY,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX customer_sessions_customer ON customer_sessions (customer_id);

-- Refresh tokens are stored only as their SHA-256 (hex).
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES customer_sessions(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    revoked_at TEXT
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
