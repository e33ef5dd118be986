-- How an order was priced: with tax included in the prices (EU consumer prices) or added
-- to them, at which rate, and each line's tax (included or added), so the order breaks out
-- the VAT per line as it was charged.
ALTER TABLE orders ADD COLUMN prices_include_tax BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN tax_rate_bp BIGINT NOT NULL DEFAULT 0;
ALTER TABLE order_lines ADD COLUMN tax_minor BIGINT NOT NULL DEFAULT 0;
