-- Usage per user per month across servers, kept beside usage_daily in
-- the same transactions (the same deltas), so "every user's usage this
-- month" reads one row per user instead of summing every day and server.
-- Existing databases are filled from usage_daily.

-- +goose Up
CREATE TABLE usage_monthly (
	month     date NOT NULL, -- the 1st of the month
	username  text NOT NULL,
	bytes_in  bigint NOT NULL,
	bytes_out bigint NOT NULL,
	seconds   bigint NOT NULL,
	sessions  bigint NOT NULL,
	PRIMARY KEY (month, username)
);
INSERT INTO usage_monthly SELECT date_trunc('month', day)::date, username, sum(bytes_in), sum(bytes_out), sum(seconds), sum(sessions)
	FROM usage_daily GROUP BY 1, 2;

-- +goose Down
DROP TABLE usage_monthly;
