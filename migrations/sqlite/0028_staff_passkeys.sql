-- Passkeys (WebAuthn) as a second factor of staff sign-in (issue 20; see
-- kernel/src/staff/passkeys.rs): the credentials, the ceremonies in progress, and
-- `passkey` as a second factor a session was signed in with.

-- A staff member's passkeys. `credential` is the relying party's record of it (the
-- `webauthn-rs` `Passkey` as JSON: the credential id, its public key, the signature
-- counter): nothing secret. `credential_id` (base64url) is the authenticator's id of it.
CREATE TABLE staff_passkeys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id BIGINT NOT NULL REFERENCES staff_users(id),
    name TEXT NOT NULL,
    credential_id TEXT NOT NULL UNIQUE,
    credential TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX staff_passkeys_staff ON staff_passkeys (staff_id);

-- A ceremony between its two requests (nodes share only the database): the registration
-- of a passkey by a signed-in staff member, or the sign-in answering the MFA challenge
-- `challenge_id` (no foreign key: the sweep deletes expired challenges). `state` is the
-- `webauthn-rs` ceremony state as JSON (the challenge sent, the credentials allowed).
-- Minutes long (`expires_at`, on the kernel's clock), single use.
CREATE TABLE staff_passkey_ceremonies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id BIGINT NOT NULL REFERENCES staff_users(id),
    kind TEXT NOT NULL CHECK (kind IN ('register', 'sign_in')),
    challenge_id BIGINT,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX staff_passkey_ceremonies_staff ON staff_passkey_ceremonies (staff_id, kind);
CREATE INDEX staff_passkey_ceremonies_expires ON staff_passkey_ceremonies (expires_at);

-- `passkey` joins the second factors a session records. SQLite cannot change a CHECK in
-- place: the table is rebuilt with the definition it has after 0005, 0021 and 0026 and
-- the new CHECK, its rows (ids kept) and AUTOINCREMENT high-water mark copied, its index
-- made again. No table references staff_tokens, so dropping it checks no foreign key.
CREATE TABLE staff_tokens_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    staff_id BIGINT NOT NULL REFERENCES staff_users(id),
    kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),
    token_hash TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    second_factor TEXT CHECK (second_factor IN ('totp', 'recovery_code', 'passkey')),
    created_from TEXT,
    last_used_at TEXT,
    last_used_from TEXT,
    signed_in_via TEXT CHECK (signed_in_via IN ('sso'))
);
INSERT INTO staff_tokens_new (id, staff_id, kind, token_hash, label, created_at, expires_at,
    revoked_at, second_factor, created_from, last_used_at, last_used_from, signed_in_via)
SELECT id, staff_id, kind, token_hash, label, created_at, expires_at,
    revoked_at, second_factor, created_from, last_used_at, last_used_from, signed_in_via
FROM staff_tokens;
-- An id once given is never given again, even when the newest token was deleted.
DELETE FROM sqlite_sequence WHERE name = 'staff_tokens_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'staff_tokens_new', seq FROM sqlite_sequence WHERE name = 'staff_tokens';
DROP TABLE staff_tokens;
ALTER TABLE staff_tokens_new RENAME TO staff_tokens;
CREATE INDEX staff_tokens_staff ON staff_tokens (staff_id);
