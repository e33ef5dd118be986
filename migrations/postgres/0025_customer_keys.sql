-- Per-customer data keys (issue 22, crypto-shredding).
--
-- A new account key purpose, 'customer': the key-wrapping key of every customer key.
ALTER TABLE account_keys DROP CONSTRAINT IF EXISTS account_keys_purpose_check;
ALTER TABLE account_keys ADD CONSTRAINT account_keys_purpose_check
    CHECK (purpose IN ('data', 'lookup', 'jwt', 'customer'));

-- Each customer's own data key, wrapped (AES-256-GCM) under the 'customer' account key.
-- Their identity fields are encrypted under it ('v2:c<customer id>:<base64>'). Erasure
-- deletes the row in the erasure's transaction. Backups leave this table's rows out
-- (they go to one key snapshot that each backup overwrites, docs/BACKUPS.md).
CREATE TABLE customer_keys (
    customer_id BIGINT PRIMARY KEY REFERENCES customers(id) ON DELETE CASCADE,
    wrapped TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- The erasure log: which customer was erased when, nothing else. It outlives the wiped
-- rows, travels with every key snapshot, and lets a restore of an older backup erase
-- again whoever was erased after that backup was taken.
CREATE TABLE customer_erasures (
    customer_id BIGINT PRIMARY KEY,
    erased_at TEXT NOT NULL
);
INSERT INTO customer_erasures (customer_id, erased_at)
    SELECT id, erased_at FROM customers WHERE erased_at IS NOT NULL;

-- Push device tokens go under the customer's key too: `token` holds the ciphertext,
-- `token_hash` (an HMAC under a key derived from the lookup key) finds a token
-- registered again, and `token_ending` (its last 8 characters) is what the customer sees
-- to tell devices apart. Rows from before hold the token in clear (NULL hash) until
-- `olivine keys per-customer` moves them.
ALTER TABLE customer_devices ADD COLUMN token_hash TEXT;
ALTER TABLE customer_devices ADD COLUMN token_ending TEXT;
CREATE UNIQUE INDEX customer_devices_token_hash ON customer_devices (platform, token_hash);
