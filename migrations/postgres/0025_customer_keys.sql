-- Per-customer data keys (issue 22, crypto-shredding): filled in by the change that builds them.
SELECT 1;
