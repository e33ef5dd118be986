-- Staff single sign-on with an OpenID Connect provider (issue 20; see
-- kernel/src/staff/sso/mod.rs): the store's provider, sign-ins in progress, and which
-- staff member each account at the provider is.

-- The one provider (id = 1). The client secret is encrypted with the accounts' data key
-- (`v1:<key id>:…`); `role_mapping` is JSON, `[{"group": …, "role": …}, …]`, tried in order.
CREATE TABLE staff_sso_provider (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    display_name TEXT NOT NULL,
    issuer_url TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret_enc TEXT NOT NULL,
    groups_claim TEXT NOT NULL,
    role_mapping TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A sign-in sent to the provider and not back yet: the `state` it carries (as its
-- SHA-256), the browser that started it (the SHA-256 of its `olv_sso` cookie), and the
-- nonce and PKCE verifier its answer is checked with. Minutes long, single use.
CREATE TABLE staff_sso_flows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state_hash TEXT NOT NULL UNIQUE,
    browser_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    -- `json` (the API's session) or `admin` (the admin's cookie).
    answer TEXT NOT NULL,
    next_path TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX staff_sso_flows_expires ON staff_sso_flows (expires_at);

-- How a session was signed in when not with the password: `sso`, through the provider
-- (its authentication stands for the store's second factor). NULL: a password (with
-- `second_factor`), or an API token.
ALTER TABLE staff_tokens ADD COLUMN signed_in_via TEXT CHECK (signed_in_via IN ('sso'));

-- An account at a provider (issuer and subject, as its ID tokens name it) and the staff
-- member it signs in as; linked at the first sign-in by a verified email.
CREATE TABLE staff_sso_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    staff_id BIGINT NOT NULL REFERENCES staff_users(id),
    linked_at TEXT NOT NULL,
    last_sign_in_at TEXT NOT NULL,
    PRIMARY KEY (issuer, subject),
    UNIQUE (staff_id, issuer)
);
