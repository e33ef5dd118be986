-- Product media (kernel/src/media). An image of a product (or of one of its variants) names
-- its original by content hash: the files live in the media storage (local disk or an
-- S3-compatible bucket) under `originals/<hash>` and `variants/<hash>/<width>.<format>`,
-- and two rows may share one hash (the same photo on two products). `width` and `height`
-- are as displayed, EXIF orientation applied. `status` is `processing` until the
-- `media.variants` job has made the variants, `ready` after, `failed` when the job could
-- not decode the original.
CREATE TABLE product_images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id BIGINT NOT NULL REFERENCES products(id),
    variant_id BIGINT REFERENCES variants(id),
    hash TEXT NOT NULL,
    content_type TEXT NOT NULL,
    byte_size BIGINT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    alt TEXT NOT NULL,
    position BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
    error TEXT,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX product_images_product ON product_images (product_id, position, id);
CREATE INDEX product_images_hash ON product_images (hash);

-- The variants made of an original, by its hash: one row per stored file.
CREATE TABLE media_variants (
    hash TEXT NOT NULL,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('webp', 'avif', 'jpg')),
    byte_size BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (hash, width, format)
);
