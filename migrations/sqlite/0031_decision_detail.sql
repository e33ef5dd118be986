-- What a plugin answered, beside the hashes of its input and output (the admin's
-- decisions explorer shows it, docs/PLUGINS.md): a compact JSON summary written by the
-- kernel, at most 8 KB (a longer one keeps what fits and says it was cut). A pricing
-- rule's adjustments (line, amount, reason), a loyalty rule's points and reasons, a
-- payment adapter's status; never card data, tokens or personal data: these rows are
-- not erased with a customer. NULL for calls that record none, and for older rows.
ALTER TABLE plugin_decisions ADD COLUMN detail TEXT;
