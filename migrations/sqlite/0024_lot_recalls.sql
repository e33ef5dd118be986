-- Recalls of a batch: its lots stop selling at once, and the report names every order
-- that received units of it (see kernel/src/inventory/recall.rs).
CREATE TABLE lot_recalls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch TEXT NOT NULL,
    -- Narrows the recall to one variant's lots; NULL: every lot with the batch number.
    sku TEXT,
    reason TEXT NOT NULL,
    recalled_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- The recall that took a lot out of sale (NULL: sellable as far as recalls go).
ALTER TABLE lots ADD COLUMN recall_id BIGINT REFERENCES lot_recalls(id);
CREATE INDEX lots_batch ON lots (batch);
CREATE INDEX order_allocations_lot ON order_allocations (lot_id);
