-- Webhook errors recorded before the webhook sink stopped quoting its URL.
-- Aligned with ledger/sqlite/migrations/00010_notice_errors.sql.
--
-- A failed delivery's error was stored as net/http wrote it, with the
-- whole webhook URL quoted, and policy_notices is listed to read-only
-- keys; the URL (an incoming-webhook path, a token in its query) is often
-- the receiver's credential. The sink now drops it; the errors recorded
-- before are replaced by a sentence saying what happened to them.

-- +goose Up
UPDATE policy_notices SET last_error = 'the delivery failed; the error recorded quoted the webhook URL and was removed on upgrade'
	WHERE last_error LIKE '%://%';

-- +goose Down
-- Nothing to restore: the removed text is not kept anywhere.
