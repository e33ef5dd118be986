-- Indexes of the admin's lists and dashboard (admin-ui/): orders by when they were
-- placed and by status (newest first), orders holding a SKU, and lots by expiry across
-- variants (the dashboard's 30/60/90-day counts and the expiring-lots list).
CREATE INDEX orders_created ON orders (created_at);
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX order_lines_sku ON order_lines (sku, order_id);
CREATE INDEX lots_expiry ON lots (expires_on);
