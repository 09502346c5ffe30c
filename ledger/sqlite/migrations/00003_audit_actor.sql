-- Audit entries name the person a service key acted for (the web
-- console's user, opauth's signed "actor") and the VPN user a command was
-- about (args.user), each indexed: the console's user page lists the
-- audit trail of one VPN user, the audit page filters by web user.
-- +goose Up
ALTER TABLE audit ADD COLUMN actor TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN target_user TEXT NOT NULL DEFAULT '';
UPDATE audit SET target_user = coalesce(json_extract(args, '$.user'), '');
CREATE INDEX audit_target_user ON audit (target_user, time);
CREATE INDEX audit_actor ON audit (actor, time);

-- +goose Down
DROP INDEX audit_actor;
DROP INDEX audit_target_user;
ALTER TABLE audit DROP COLUMN target_user;
ALTER TABLE audit DROP COLUMN actor;
