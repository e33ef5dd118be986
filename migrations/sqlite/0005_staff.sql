-- Staff users: the people who run the store, each with one role. The role's permissions
-- are fixed in code (kernel/src/staff/permissions.rs), so a role means the same thing
-- on every node and in every version of the docs.
CREATE TABLE staff_users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'catalog', 'support')),
    -- argon2id; NULL until a password is set (such a user signs in with API tokens only).
    password_hash TEXT,
    disabled_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Bearer tokens of staff users, stored only as their SHA-256 (hex): 'session' tokens
-- come from signing in with a password and expire; 'api' tokens are made for tools
-- (the CLI, scripts) and last until revoked.
CREATE TABLE staff_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id BIGINT NOT NULL REFERENCES staff_users(id),
    kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE INDEX staff_tokens_staff ON staff_tokens (staff_id);
