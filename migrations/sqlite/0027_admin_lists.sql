-- The admin's lists at volume (docs/PERFORMANCE.md, "Admin pages"):
-- the products list ordered by name whatever its case, read from this index instead of
-- sorting every product (admin-ui/src/catalog.rs);
CREATE INDEX products_lower_name ON products (LOWER(name), id);
-- a recall's lots (the recalls list counts them, the report lists them).
CREATE INDEX lots_recall ON lots (recall_id) WHERE recall_id IS NOT NULL;
