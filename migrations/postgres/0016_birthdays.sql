-- Birthdays for birthday rewards, given by the customer for that purpose: month and day
-- only (the year is not asked: no rule needs an age). `set_at` holds a new birthday back
-- for 30 days, so changing it does not earn a reward at once; `celebrated_year` is the
-- last year the birthday was celebrated (`customer.birthday`), so it happens once a year
-- however often the birthday changes. Erasure deletes the row.
CREATE TABLE customer_birthdays (
    customer_id BIGINT PRIMARY KEY REFERENCES customers(id),
    month BIGINT NOT NULL CHECK (month BETWEEN 1 AND 12),
    day BIGINT NOT NULL CHECK (day BETWEEN 1 AND 31),
    set_at TEXT NOT NULL,
    celebrated_year BIGINT
);
CREATE INDEX customer_birthdays_date ON customer_birthdays (month, day);
