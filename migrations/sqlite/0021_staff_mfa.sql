-- Two-factor sign-in of staff with an authenticator app (TOTP, RFC 6238), recovery codes,
-- the short-lived challenges between a password and its second factor, and what a staff
-- member sees of their sessions (see kernel/src/staff/mfa.rs and sessions.rs).

-- One authenticator per staff member. The shared secret is encrypted with the accounts'
-- data key (`v1:<key id>:…`, bound to the staff member); `confirmed_at` is NULL while the
-- enrolment waits for its first code.
CREATE TABLE staff_totp (
    staff_id BIGINT PRIMARY KEY REFERENCES staff_users(id),
    secret_enc TEXT NOT NULL,
    confirmed_at TEXT,
    -- The time step (unix time / 30) of the last code accepted: a code works once.
    last_step BIGINT,
    -- Wrong second-factor codes since `failed_since`; at the limit the factor is locked
    -- until `locked_until`.
    failed_count BIGINT NOT NULL DEFAULT 0,
    failed_since TEXT,
    locked_until TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Recovery codes, shown once and stored as argon2id hashes; each works once.
CREATE TABLE staff_recovery_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id BIGINT NOT NULL REFERENCES staff_users(id),
    code_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX staff_recovery_codes_staff ON staff_recovery_codes (staff_id);

-- A password that checked out for a staff member with a second factor: the opaque
-- challenge (stored as its SHA-256) lives minutes, takes a few wrong codes, works once.
CREATE TABLE staff_mfa_challenges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id BIGINT NOT NULL REFERENCES staff_users(id),
    challenge_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    used_at TEXT,
    created_from TEXT
);
CREATE INDEX staff_mfa_challenges_staff ON staff_mfa_challenges (staff_id);

-- How a session was made (NULL: a password alone, or an API token), from where, and when
-- and from where a token was last used (written at most once a minute).
ALTER TABLE staff_tokens ADD COLUMN second_factor TEXT
    CHECK (second_factor IN ('totp', 'recovery_code'));
ALTER TABLE staff_tokens ADD COLUMN created_from TEXT;
ALTER TABLE staff_tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE staff_tokens ADD COLUMN last_used_from TEXT;
