-- Usage per user per month across servers, kept beside usage_daily in
-- the same transactions (the same deltas), so "every user's usage this
-- month" reads one row per user instead of summing every day and server.
-- Existing databases are filled from usage_daily.

-- +goose Up
CREATE TABLE usage_monthly (
	month     TEXT NOT NULL, -- YYYY-MM
	username  TEXT NOT NULL,
	bytes_in  INTEGER NOT NULL,
	bytes_out INTEGER NOT NULL,
	seconds   INTEGER NOT NULL,
	sessions  INTEGER NOT NULL,
	PRIMARY KEY (month, username)
) WITHOUT ROWID;
INSERT INTO usage_monthly SELECT substr(day, 1, 7), username, sum(bytes_in), sum(bytes_out), sum(seconds), sum(sessions)
	FROM usage_daily GROUP BY 1, 2;

-- +goose Down
DROP TABLE usage_monthly;
