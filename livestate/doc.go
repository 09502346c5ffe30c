// Package livestate owns the shipper's live view of ocserv, read from
// occtl every snapshot interval: snapshots of users, status, bans and ban
// points on the snapshots stream and in the state bucket; the server_id
// claim in that bucket (cloned hosts are caught); and the session table
// behind interim accounting and reconciliation, whose events go through
// the spool like the hook's and carry deterministic ids.
//
// The table links three views of a session: occtl's worker (ID and
// device, its connect time, and the session cookie's id, which a roaming
// client keeps), the hook's record in the spool's sessions/ directory (the
// session_uid under "<ID>-<DEVICE>" from connect to disconnect), and what
// the table itself saw before (its state file, so a restart re-emits
// nothing). docs/livestate.md describes the subjects, the bucket, the
// payloads and the rules.
package livestate
