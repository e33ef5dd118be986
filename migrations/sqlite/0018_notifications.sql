-- Notifications: what the kernel told customers (and the merchant's webhook), through
-- which channel plugin, and every delivery attempt. A notification names its recipient
-- by reference (a customer's email, an order's email, a device, an endpoint), never by
-- the address itself: the address is decrypted when it is delivered, and erasure leaves
-- nothing to read here.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The bus event it came from (`event:<id>`), `campaign:<id>` or `resend:<id>`.
    source TEXT NOT NULL,
    topic TEXT NOT NULL,
    customer_id BIGINT REFERENCES customers(id),
    -- email, push or webhook; and the channel plugin that delivers it.
    channel TEXT NOT NULL CHECK (channel IN ('email', 'push', 'webhook')),
    plugin_id TEXT NOT NULL,
    recipient_kind TEXT NOT NULL CHECK (recipient_kind IN ('customer', 'order', 'device', 'endpoint')),
    recipient_ref TEXT NOT NULL,
    title TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT,
    link TEXT,
    data_json TEXT NOT NULL,
    marketing INTEGER NOT NULL DEFAULT 0,
    priority TEXT NOT NULL DEFAULT 'normal',
    collapse_key TEXT,
    expires_at TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'gone', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    provider_reference TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    delivered_at TEXT,
    -- One notification per (source, channel, recipient): a redelivered event adds none.
    UNIQUE (source, channel, recipient_kind, recipient_ref)
);
CREATE INDEX notifications_customer ON notifications (customer_id, id);
CREATE INDEX notifications_status ON notifications (status, id);

CREATE TABLE notification_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id BIGINT NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed', 'gone', 'skipped')),
    detail TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX notification_attempts_notification ON notification_attempts (notification_id, id);

-- What the merchant changed of the built-in templates, per topic and channel.
CREATE TABLE notification_templates (
    topic TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'push', 'webhook')),
    title TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT,
    link TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (topic, channel)
);

-- Devices registered for push: a token of APNs or FCM, for one app.
CREATE TABLE customer_devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    platform TEXT NOT NULL CHECK (platform IN ('apns', 'fcm')),
    token TEXT NOT NULL,
    app_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (platform, token)
);
CREATE INDEX customer_devices_customer ON customer_devices (customer_id);

-- A customer's choice of channels for transactional messages (no row: on). Marketing
-- messages also need the consent `marketing_email` or `marketing_push`.
CREATE TABLE notification_preferences (
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    channel TEXT NOT NULL CHECK (channel IN ('email', 'push')),
    enabled INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, channel)
);

-- "Tell me when it is back": one row per customer and product until it is back.
CREATE TABLE back_in_stock_requests (
    customer_id BIGINT NOT NULL REFERENCES customers(id),
    product_id BIGINT NOT NULL REFERENCES products(id),
    created_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, product_id)
);
CREATE INDEX back_in_stock_product ON back_in_stock_requests (product_id);

-- Staff's promotional messages, sent to customers who consented to marketing.
CREATE TABLE notification_campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT,
    link TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Shipped with a carrier as well as a tracking number.
ALTER TABLE orders ADD COLUMN carrier TEXT;
